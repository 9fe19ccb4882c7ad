"""The dry run on a small hand-built Delta events table: counts, minimums, history and exit codes.

Run date D = 2026-03-01, P3 = 1 day, so the newest complete snapshot is T = 2026-02-28 and its label
window is [02-28, 03-01). Two training snapshots a day apart: oldest = D − 2·1d − 1d = 02-26, and
with P1 = 2 days the events must start by 02-24.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession

from jobs import check_segments
from segments_lib.language.dry_run import check_segment, events_history, format_report
from segments_lib.language.segment_config import parse_segments
from segments_lib.store import tables
from tests.conftest import make_config

D = date(2026, 3, 1)
UTC = timezone.utc
OPEN, BUY = "Open App", "Purchase Completed"
ROWS = [
    ("a", OPEN, datetime(2026, 2, 27, 12), None), ("a", BUY, datetime(2026, 2, 28, 10), 80.0),  # eligible, positive
    ("b", OPEN, datetime(2026, 2, 27, 9), None),                                                # eligible, negative
    ("c", OPEN, datetime(2026, 2, 20), None), ("c", BUY, datetime(2026, 2, 28, 5), 20.0),       # inactive at T
    ("d", OPEN, datetime(2026, 2, 28, 1), None),                                                # first seen after T
]
SEGMENTS_YAML = textwrap.dedent("""
    segments:
      - name: buyers
        kind: conversion
        target: {occurs: {events: [Purchase Completed]}}
        past_window: 2d
        prediction_window: 1d
        eligible: {active_in: 2d}
        training: {snapshots: 2, stride: 1d, min_positives: 1, min_negatives: 1}
      - name: big_buyers
        kind: high_value
        target: {value_sum: {events: Purchase Completed, at_least: 50}}
        past_window: 2d
        prediction_window: 1d
        training: {snapshots: 2, stride: 1d, min_positives: 5, min_negatives: 1}
      - name: long_memory
        target: {occurs: {events: [Open App]}}
        past_window: 2d
        prediction_window: 1d
        training: {snapshots: 10, stride: 1d, min_positives: 0, min_negatives: 0}
""")


def events_frame(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [(*r, r[2].date()) for r in ROWS],
        "user_id string, event_name string, event_time timestamp, event_value double, event_date date",
    )


def segments():
    return parse_segments(__import__("yaml").safe_load(SEGMENTS_YAML), "segments.yaml",
                          {"high": 0.8, "medium": 0.6, "low": 0.4})


def test_check_segment_counts_eligible_positives_and_history(spark) -> None:
    events = events_frame(spark)
    buyers, big_buyers, long_memory = segments()
    history = events_history(events)
    assert (history.first, history.last) == (datetime(2026, 2, 20, tzinfo=UTC), datetime(2026, 2, 28, 10, tzinfo=UTC))
    assert history.event_counts == {OPEN: 4, BUY: 2}

    result = check_segment(events, buyers, D, history)
    assert result.snapshot == datetime(2026, 2, 28, tzinfo=UTC)
    assert (result.eligible, result.positives, result.negatives, result.base_rate) == (2, 1, 1, 0.5)
    assert result.oldest_training_snapshot == datetime(2026, 2, 26, tzinfo=UTC)
    assert result.history_needed_from == datetime(2026, 2, 24, tzinfo=UTC)
    assert result.minimums_met and result.history_ok and result.ok

    # Without active_in, c is eligible too (seen before T); a's 80 and c's 20: one sum ≥ 50.
    big = check_segment(events, big_buyers, D, history)
    assert (big.eligible, big.positives, big.negatives) == (3, 1, 2)
    assert big.problems == ("1 positives at 2026-02-28, fewer than training.min_positives 5",)

    # 10 snapshots: oldest = 03-01 − 2d − 9d = 02-18, minus P1 2d = 02-16, before the first event (02-20).
    long = check_segment(events, long_memory, D, history)
    assert long.oldest_training_snapshot == datetime(2026, 2, 18, tzinfo=UTC)
    assert not long.history_ok
    assert long.problems == (
        "events start 2026-02-20 00:00, but 10 training snapshots every 1d need events from 2026-02-16 00:00 "
        "(oldest training snapshot 2026-02-18 − past_window 2d); lower training.snapshots or training.stride, "
        "or load more history",
    )


def test_stale_events_are_reported(spark) -> None:
    events = events_frame(spark)
    buyers = segments()[0]
    result = check_segment(events, buyers, date(2026, 3, 5), events_history(events))
    assert result.problems[-1] == (
        "events end 2026-02-28 10:00, more than a day before the newest label window closes (2026-03-05 00:00): "
        "labels would be incomplete; is the events table up to date?"
    )


@pytest.fixture(scope="module")
def workspace(spark, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One events table for the job tests (they only read it); the job finds it via SEGMENTS_WORKSPACE."""
    root = tmp_path_factory.mktemp("check_ws")
    tables.append(events_frame(spark), make_config(root).events.path, partition_by=("event_date",))
    (root / "segments.yaml").write_text(SEGMENTS_YAML)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEGMENTS_WORKSPACE", str(root))
        yield root


def test_job_prints_the_table_and_fails_when_a_segment_cannot_be_built(workspace: Path, capsys) -> None:
    code = check_segments.main(["--date", "2026-03-01", "--segments-file", str(workspace / "segments.yaml")])
    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "run date 2026-03-01"
    assert lines[1] == "events: 6 rows, 2 event names, 2026-02-20 00:00 to 2026-02-28 10:00 UTC"
    header, _, buyers, big, long = lines[2:7]
    assert header.split()[:3] == ["segment", "snapshot", "T"]
    assert buyers.split() == ["buyers", "2026-02-28", "2", "1", "1", "50.0%", "1/1", "met", "2026-02-24",
                              "2026-02-20", "ok"]
    assert big.split()[-1] == "BUILD" and "NOT met" in big
    assert "(too short)" in long
    assert "  big_buyers: 1 positives at 2026-02-28, fewer than training.min_positives 5" in lines


def test_without_a_date_the_night_after_the_newest_event_day_is_checked(workspace: Path, capsys) -> None:
    """The newest event is 2026-02-28 10:00 UTC, so the default run date is 2026-03-01 (not today, which
    would find every segment's history stale), and the report equals the one for --date 2026-03-01."""
    code = check_segments.main(["--segments-file", str(workspace / "segments.yaml")])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines[0] == "run date 2026-03-01 (the day after the newest event's day; --date to choose)"
    assert check_segments.main(["--date", "2026-03-01", "--segments-file", str(workspace / "segments.yaml")]) == 1
    assert capsys.readouterr().out.splitlines()[1:] == lines[1:]


def test_default_run_date_is_the_utc_day_after_the_newest_event() -> None:
    assert check_segments.default_run_date(datetime(2026, 5, 31, 23, 59, tzinfo=UTC)) == date(2026, 6, 1)
    # 00:30 on June 1st in Berlin (UTC+2) is 22:30 UTC on May 31st.
    berlin_summer = timezone(timedelta(hours=2))
    assert check_segments.default_run_date(datetime(2026, 6, 1, 0, 30, tzinfo=berlin_summer)) == date(2026, 6, 1)


def test_job_succeeds_for_a_buildable_selection(workspace: Path, capsys) -> None:
    code = check_segments.main(["--date", "2026-03-01", "--segments", "buyers",
                                "--segments-file", str(workspace / "segments.yaml")])
    assert code == 0
    assert "cannot build" not in capsys.readouterr().out


def test_job_rejects_unknown_events_and_segments_with_exit_2(workspace: Path, capsys) -> None:
    bad = workspace / "bad.yaml"
    bad.write_text(SEGMENTS_YAML.replace("[Open App]", "[Open Ap]"))
    assert check_segments.main(["--date", "2026-03-01", "--segments-file", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == (
        "check_segments: bad.yaml: segments[2] 'long_memory': target.occurs.events: event 'Open Ap' never occurs "
        "in the events table; closest existing names: 'Open App'"
    )
    assert check_segments.main(["--date", "2026-03-01", "--segments", "buyer",
                                "--segments-file", str(workspace / "segments.yaml")]) == 2
    assert "unknown segment(s) 'buyer' (did you mean 'buyers'?)" in capsys.readouterr().err


def test_format_report_lists_every_problem_under_its_segment(spark) -> None:
    events = events_frame(spark)
    results = [check_segment(events, s, D, events_history(events)) for s in segments()[1:2]]
    report = format_report(results)
    assert report.splitlines()[-2:] == [
        "cannot build:", "  big_buyers: 1 positives at 2026-02-28, fewer than training.min_positives 5",
    ]
