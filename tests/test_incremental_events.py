"""A night reads a window of the validated events, and keeps that table up to date incrementally.

Window dates are worked out by hand in the comments; the Spark tests use a few hand-built rows or a
small demo history (200 users, 70 days).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from segments_lib.config import AppConfig
from segments_lib.features.frame import eligible_features
from segments_lib.intake import events as ev
from segments_lib.job.runner import prepare_events, refresh_validated
from segments_lib.language.definitions import Eligibility, Occurs, SegmentDefinition, Sequence, TrainingSettings
from segments_lib.language.windows import (
    ReadWindow,
    backtest_window,
    day_chunks,
    job_window,
    look_back,
    night_window,
    refresh_from,
    scoring_window,
    training_window,
)
from segments_lib.promise.ledger import backtest_scored_date
from segments_lib.store import validated
from tests.conftest import make_config

DAY = timedelta(days=1)
D = date(2026, 6, 1)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def segment(**changes) -> SegmentDefinition:
    base = dict(name="buyers", kind="conversion", target=Occurs(events=("Purchase Completed",)),
                past_window=28 * DAY, prediction_window=7 * DAY, eligible=Eligibility(active_in=28 * DAY),
                training=TrainingSettings(snapshots=4, stride=7 * DAY), feature_history=90 * DAY)
    return SegmentDefinition(**{**base, **changes})


# --- the window arithmetic -------------------------------------------------------------------------


def test_training_scoring_and_backtest_windows_by_hand() -> None:
    seg = segment()
    # H = 7d: calibration 05-25, newest training 06-01 − 14d = 05-18, then 05-11, 05-04, oldest 04-27.
    # 04-27 − 90d: −27 → 03-31, −31 → 02-28, −28 → 01-31, −4 → 01-27.
    assert training_window(seg, D) == ReadWindow(utc(2026, 1, 27), utc(2026, 6, 1))
    # 06-01 − 90d: −31 → 05-01, −30 → 04-01, −29 → 03-03.
    assert scoring_window(seg, D) == ReadWindow(utc(2026, 3, 3), utc(2026, 6, 1))
    # The ledger judges S = D − 7d = 05-25 with labels over [05-25, 06-01).
    assert backtest_window(seg, D) == ReadWindow(utc(2026, 5, 25), utc(2026, 6, 1))
    assert night_window(seg, D, training=False) == ReadWindow(utc(2026, 3, 3), utc(2026, 6, 1))
    assert night_window(seg, D, training=True) == ReadWindow(utc(2026, 1, 27), utc(2026, 6, 1))
    # A backfill over 05-31 and 06-01 reads from the older night's oldest snapshot: 01-27 − 1d.
    assert job_window([seg], [date(2026, 5, 31), D], training=True) == ReadWindow(utc(2026, 1, 26), utc(2026, 6, 1))
    window = scoring_window(seg, D)
    assert (window.first_day, window.last_day) == (date(2026, 3, 3), date(2026, 5, 31))  # D itself is not read


def test_a_sequence_horizon_and_longer_eligibility_widen_the_window() -> None:
    seq = segment(target=Sequence("Add to Cart", "Purchase Completed", timedelta(hours=24)))
    # H = 7d + 24h = 8d: S = 05-24; oldest training 06-01 − 16d − 21d = 04-25; − 90d = 01-25.
    assert backtest_window(seq, D).start == utc(2026, 5, 24)
    assert backtest_scored_date(D, seq.horizon) == date(2026, 5, 24)  # the ledger's own arithmetic agrees
    assert training_window(seq, D).start == utc(2026, 1, 25)
    # feature_history shorter than P1 counts as P1: 06-01 − 28d = 05-04.
    assert look_back(segment(feature_history=7 * DAY)) == 28 * DAY
    assert scoring_window(segment(feature_history=7 * DAY), D).start == utc(2026, 5, 4)
    # has_done over a 200-day lookback: 06-01 − 200d = 2025-11-13.
    longer = segment(eligible=Eligibility(has_done=("Purchase Completed",), lookback=200 * DAY))
    assert scoring_window(longer, D).start == utc(2025, 11, 13)


def test_refresh_start_and_day_chunks() -> None:
    assert refresh_from(date(2026, 5, 10), 1) == date(2026, 5, 9)
    assert refresh_from(date(2026, 5, 10), 0) == date(2026, 5, 10)  # the newest day may have been partial
    assert refresh_from(None, 3) is None
    may = [date(2026, 5, d) for d in (1, 4, 7, 8)]
    assert day_chunks(may[0], may[3], 3) == [(may[0], may[1]), (may[1], may[2]), (may[2], may[3])]


# --- the validated table, kept incrementally --------------------------------------------------------

SCHEMA = "user_id string, event_name string, event_time timestamp, event_value double"


def day_rows(first: date, days: int) -> list[tuple]:
    """Two users, one event each per day at noon; u2's purchases carry a value."""
    rows = []
    for i in range(days):
        noon = datetime.combine(first + i * DAY, datetime.min.time()) + timedelta(hours=12)
        rows += [("u1", "Open App", noon, None), ("u2", "Purchase Completed", noon, float(i + 1))]
    return rows


@pytest.fixture()
def cfg(tmp_path: Path) -> AppConfig:
    return make_config(tmp_path / "ws")


def write_source(spark, cfg: AppConfig, rows: list[tuple], mode: str = "overwrite") -> None:
    spark.createDataFrame(rows, SCHEMA).write.format("delta").mode(mode).save(str(cfg.events.path))


def files_by_day(spark, cfg: AppConfig) -> dict[date, set[str]]:
    frame = validated.read_events(spark, cfg).select("event_date", F.input_file_name().alias("file")).distinct()
    found: dict[date, set[str]] = {}
    for row in frame.collect():
        found.setdefault(row.event_date, set()).add(row.file)
    return found


def test_a_night_after_new_source_days_rewrites_only_those_and_the_late_days(spark, cfg) -> None:
    write_source(spark, cfg, day_rows(date(2026, 5, 1), 10))  # 05-01 .. 05-10
    first = refresh_validated(spark, cfg, date(2026, 5, 11))  # empty table: the whole source
    assert (first.first_day, first.counts["valid"]) == (None, 20)
    before = files_by_day(spark, cfg)
    # Two new days arrive, and a bad row lands on an old day: old days are not validated again.
    write_source(spark, cfg, [*day_rows(date(2026, 5, 11), 2), (None, "Open App", datetime(2026, 5, 2, 8), None)],
                 mode="append")
    second = refresh_validated(spark, cfg, date(2026, 5, 13))  # late_days = 1: from 05-10 − 1 = 05-09
    assert second.first_day == date(2026, 5, 9)
    assert (second.counts["total"], second.counts["valid"], second.counts[ev.NULL_USER_ID]) == (8, 8, 0)
    after = files_by_day(spark, cfg)
    assert sorted(after) == [date(2026, 5, 1) + i * DAY for i in range(12)]
    # Optimized write: one file per day, however many tasks held the day's rows.
    assert {day: len(files) for day, files in after.items()} == {day: 1 for day in after}
    assert all(after[day] == before[day] for day in before if day < date(2026, 5, 9))  # same files: untouched
    assert all(after[day] != before[day] for day in (date(2026, 5, 9), date(2026, 5, 10)))
    (commit,) = spark.sql(f"DESCRIBE HISTORY delta.`{cfg.events.validated_path}` LIMIT 1").collect()
    assert "2026-05-09" in commit.operationParameters["predicate"]
    profile = validated.read_profile(spark, cfg)
    assert (profile.first_day, profile.newest_day, profile.days) == (date(2026, 5, 1), date(2026, 5, 12), 12)
    assert profile.event_counts == {"Open App": 12, "Purchase Completed": 12}


def test_rerunning_a_night_gives_the_same_tables(spark, cfg) -> None:
    rows = [*day_rows(date(2026, 5, 1), 5), (None, "Open App", datetime(2026, 5, 1, 8), None),
            (None, "Open App", datetime(2026, 5, 5, 8), None)]
    write_source(spark, cfg, rows)
    cfg = make_config(cfg.workspace.path, events={"max_rejected_share": 0.2})

    def tables_now() -> tuple:
        events = sorted(tuple(r) for r in validated.read_events(spark, cfg).collect())
        quarantine = sorted(((r.user_id, r.event_date, r.reason, r.run_date) for r in
                             spark.read.format("delta").load(str(cfg.quarantine_path)).collect()), key=repr)
        return events, quarantine

    first = prepare_events(spark, cfg, date(2026, 5, 6))
    once = tables_now()
    again = prepare_events(spark, cfg, date(2026, 5, 6))  # re-validates 05-04 and 05-05 only
    assert tables_now() == once
    # The quarantine slice keeps the 05-01 reject the full import found, and holds 05-05's once.
    assert [(q[1], q[2]) for q in once[1]] == [(date(2026, 5, 1), ev.NULL_USER_ID), (date(2026, 5, 5), ev.NULL_USER_ID)]
    assert (first.counts["total"], again.counts["total"]) == (12, 5)
    # The history the dry run and the segment checks see is the whole table's, both times.
    for prepared in (first, again):
        assert (prepared.first_time, prepared.last_time) == (datetime(2026, 5, 1, 12), datetime(2026, 5, 5, 12))
        assert prepared.event_counts == {"Open App": 5, "Purchase Completed": 5}


def test_a_stage_reads_its_window_with_partition_pruning(spark, cfg) -> None:
    write_source(spark, cfg, day_rows(date(2026, 5, 1), 10))
    refresh_validated(spark, cfg, date(2026, 5, 11))
    window = ReadWindow(utc(2026, 5, 4, 12), utc(2026, 5, 8))
    narrowed = validated.in_window(validated.read_events(spark, cfg), window)
    plan = narrowed._jdf.queryExecution().executedPlan().toString()
    partition_filters = plan[plan.index("PartitionFilters: ["):].split("]")[0]
    assert "event_date" in partition_filters and "2026-05-04" in partition_filters, plan
    # Files of 05-04 .. 05-07 only, cut exactly at 05-04 12:00 (inclusive) and 05-08 00:00.
    assert {r.event_date for r in narrowed.select(F.input_file_name(), "event_date").collect()} == {
        date(2026, 5, 4), date(2026, 5, 5), date(2026, 5, 6), date(2026, 5, 7)}
    assert narrowed.count() == 8


def test_features_from_the_window_equal_features_from_the_whole_history(spark) -> None:
    from segments_lib.intake.demo import generate_events

    events = spark.createDataFrame(generate_events(users=200, days=70, end_date=D, seed=5).to_pandas())
    events = events.withColumn("event_date", ev.utc_date(F.col("event_time")))
    seg = segment(feature_history=21 * DAY, past_window=14 * DAY, eligible=Eligibility(active_in=14 * DAY),
                  training=TrainingSettings(snapshots=2, stride=7 * DAY))
    whole = eligible_features(events, seg, [utc(2026, 6, 1)], utc(2026, 6, 1))
    window = validated.in_window(events, scoring_window(seg, D))
    narrow = eligible_features(window, seg, [utc(2026, 6, 1)], utc(2026, 6, 1))
    assert window.count() < events.count() / 2  # the window really leaves most of the history out
    assert narrow.columns == whole.columns
    assert sorted(narrow.rows().collect()) == sorted(whole.rows().collect())


def test_feature_history_is_a_segment_key_at_least_p1() -> None:
    from segments_lib.language.segment_config import SegmentConfigError, parse_segments

    def one(**extra) -> dict:
        return {"segments": [{"name": "s", "target": {"occurs": {"events": "Open App"}}, "past_window": "28d",
                              "prediction_window": "7d", **extra}]}

    (default,) = parse_segments(one(), "segments.yaml", {"medium": 0.6})
    (set_,) = parse_segments(one(feature_history="90d"), "segments.yaml", {"medium": 0.6})
    assert (default.history, set_.history) == (365 * DAY, 90 * DAY)
    with pytest.raises(SegmentConfigError, match="feature_history: 14d is shorter than past_window 28d"):
        parse_segments(one(feature_history="14d"), "segments.yaml", {"medium": 0.6})
