"""The bad-input catalogue: each messy input gives a clear error, a quarantine, or a status, never a crash.

Inputs already covered by the module's own unit tests are listed in docs/reliability.md with that test;
this file adds the rest. Job-level cases drive `run_job` in-process on tiny hand-built Delta tables.
"""

from __future__ import annotations

import calendar
import logging
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from segments_lib.config import AppConfig
from segments_lib.features.engine import FeatureSpec, build_features
from segments_lib.features.spec import event_slug
from segments_lib.intake import events as ev
from segments_lib.job.runner import run_job
from tests.conftest import make_config

T = datetime(2026, 6, 1)
RUN_DATE = date(2026, 6, 1)
DAY = timedelta(days=1)
RAW_SCHEMA = "user_id string, event_name string, event_time timestamp, event_value double"
SEGMENTS = """
segments:
  - name: likely_to_purchase
    kind: conversion
    target: {occurs: {events: [%s]}}
    past_window: 7d
    prediction_window: 7d
"""


def validated(spark, rows: list[tuple], cfg: AppConfig, schema: str = RAW_SCHEMA,
              source_timezone: str | None = None) -> ev.ValidationResult:
    conformed = ev.conform(spark.createDataFrame(rows, schema), cfg.events.columns, source_timezone)
    return ev.validate(conformed, T, ev.ValidationRules.from_config(cfg.events), run_date=RUN_DATE)


# --- rows ------------------------------------------------------------------------------------------


def test_near_duplicates_one_second_apart_are_both_kept_exact_ones_removed(spark, app_config: AppConfig) -> None:
    at = datetime(2026, 5, 30, 10, 0, 0)
    rows = [("u1", "Open App", at, None), ("u1", "Open App", at, None),
            ("u1", "Open App", at + timedelta(seconds=1), None)]
    result = validated(spark, rows, app_config)
    assert result.counts["valid"] == 2
    assert result.counts[ev.DUPLICATES_REMOVED] == 1
    assert sorted(r.event_time for r in result.valid.collect()) == [at, at + timedelta(seconds=1)]


def test_events_from_1970_are_valid_and_only_stretch_tenure(spark, app_config: AppConfig) -> None:
    rows = [("old", "Open App", datetime(1970, 1, 1), None), ("old", "Open App", T - 2 * DAY, None)]
    result = validated(spark, rows, app_config)
    assert result.counts["valid"] == 2 and result.rejected_count == 0
    spec = FeatureSpec(event_names=("Open App",), windows=(7 * DAY,), past_window=7 * DAY)
    snapshots = spark.createDataFrame([(T,)], "snapshot_time timestamp")
    (row,) = build_features(result.valid, snapshots, spec).collect()
    assert row.tenure_days == 20605.0  # 1970-01-01 → 2026-06-01
    assert row["freq_7d__open_app"] == 1.0  # the 1970 event is outside every frequency window
    assert row["recency_days__open_app"] == 2.0


def test_unparseable_time_strings_are_quarantined_as_null_event_time(spark, app_config: AppConfig) -> None:
    rows = [("u1", "Open App", "2026-05-30 10:00:00", None), ("u2", "Open App", "yesterday-ish", None)]
    result = validated(spark, rows, app_config,
                       schema="user_id string, event_name string, event_time string, event_value double")
    assert result.counts["valid"] == 1
    (bad,) = result.rejected.collect()
    assert (bad.user_id, bad.reason) == ("u2", ev.NULL_EVENT_TIME)


def test_new_york_source_times_are_stored_as_utc_across_the_dst_change(spark, app_config: AppConfig) -> None:
    rows = [("u1", "Open App", "2026-03-08 01:30:00", None),  # EST, UTC-5
            ("u2", "Open App", "2026-03-08 03:30:00", None),  # EDT after the spring-forward, UTC-4
            ("u3", "Open App", "2026-05-31 22:00:00", None)]  # EDT evening: next day in UTC
    conformed = ev.conform(
        spark.createDataFrame(rows, "user_id string, event_name string, event_time string, event_value double"),
        app_config.events.columns, "America/New_York")
    got = {r.user_id: (r.event_time, r.event_date) for r in conformed.collect()}
    assert got == {
        "u1": (datetime(2026, 3, 8, 6, 30), date(2026, 3, 8)),
        "u2": (datetime(2026, 3, 8, 7, 30), date(2026, 3, 8)),
        "u3": (datetime(2026, 6, 1, 2, 0), date(2026, 6, 1)),
    }


# --- skew and names --------------------------------------------------------------------------------

WHALE_EVENTS = 200_000
T_EPOCH = calendar.timegm(T.timetuple())


def test_one_user_with_200k_events_gets_exact_counts_without_blowing_up(spark) -> None:
    # The whale: one event per second going back from T, alternating Open App (even ids) / Add to Cart.
    whale = spark.range(WHALE_EVENTS).select(
        F.lit("whale").alias("user_id"),
        F.when(F.col("id") % 2 == 0, F.lit("Open App")).otherwise(F.lit("Add to Cart")).alias("event_name"),
        F.timestamp_seconds(F.lit(T_EPOCH) - F.col("id") - 1).alias("event_time"),
        F.lit(None).cast("double").alias("event_value"),
    )
    minnow = spark.createDataFrame([("minnow", "Open App", T - 3 * DAY, None)], RAW_SCHEMA)
    spec = FeatureSpec(event_names=("Add to Cart", "Open App"), windows=(DAY, 7 * DAY), past_window=7 * DAY)
    snapshots = spark.createDataFrame([(T,)], "snapshot_time timestamp")
    got = {r.user_id: r for r in build_features(whale.unionByName(minnow), snapshots, spec).collect()}
    # In [T−1d, T): ids 0..86399 (86 400 events), half of each name; the whole 200k within 7 days.
    assert got["whale"]["freq_1d__open_app"] == 43_200.0
    assert got["whale"]["freq_1d__add_to_cart"] == 43_200.0
    assert got["whale"]["freq_7d__open_app"] == 100_000.0
    assert got["whale"]["freq_7d__add_to_cart"] == 100_000.0
    assert got["whale"]["recency_days__open_app"] == pytest.approx(1 / 86_400)
    assert got["minnow"]["freq_7d__open_app"] == 1.0 and got["minnow"]["freq_1d__open_app"] == 0.0


LONG_NAME = "Viewed " + "very long product name " * 13  # 306 characters


def test_unicode_and_very_long_event_names_get_safe_column_slugs(spark) -> None:
    assert event_slug("Añadir al carrito 🛒") == "a_adir_al_carrito"
    assert event_slug(LONG_NAME) == "viewed_" + "very_long_product_name_" * 12 + "very_long_product_name"
    with pytest.raises(ValueError, match="has no letters or digits"):
        event_slug("🛒🛒")
    rows = [("u1", "Añadir al carrito 🛒", T - DAY, None), ("u1", "Añadir al carrito 🛒", T - 2 * DAY, None),
            ("u1", LONG_NAME, T - DAY, None)]
    spec = FeatureSpec(event_names=("Añadir al carrito 🛒", LONG_NAME), windows=(7 * DAY,), past_window=7 * DAY)
    snapshots = spark.createDataFrame([(T,)], "snapshot_time timestamp")
    (row,) = build_features(spark.createDataFrame(rows, RAW_SCHEMA), snapshots, spec).collect()
    assert row["freq_7d__a_adir_al_carrito"] == 2.0
    assert row[f"freq_7d__{event_slug(LONG_NAME)}"] == 1.0


# --- the job on bad tables ---------------------------------------------------------------------------


def job_config(tmp_path: Path, target_event: str = "Purchase Completed") -> AppConfig:
    segments_file = tmp_path / "segments.yaml"
    segments_file.write_text(SEGMENTS % target_event)
    return make_config(tmp_path / "ws", segments_file=str(segments_file))


def write_events(spark, cfg: AppConfig, rows: list[tuple], schema: str = RAW_SCHEMA) -> None:
    spark.createDataFrame(rows, schema).write.format("delta").mode("overwrite").save(str(cfg.events.path))


GOOD_ROWS = [("u1", "Open App", T - 3 * DAY, None), ("u1", "Purchase Completed", T - 2 * DAY, 12.5),
             ("u2", "Open App", T - 5 * DAY, None)]


def run_expecting(cfg: AppConfig, caplog, code: int, *fragments: str) -> None:
    with caplog.at_level(logging.INFO):
        assert run_job(cfg, [RUN_DATE], None, "auto") == code
    for fragment in fragments:
        assert fragment in caplog.text


def test_missing_events_table_exits_2_naming_the_path(spark, tmp_path: Path, caplog) -> None:
    cfg = job_config(tmp_path)
    run_expecting(cfg, caplog, 2, f"events table not found: no Delta table at {cfg.events.path}")


def test_events_path_that_is_a_plain_file_exits_2_naming_the_path(spark, tmp_path: Path, caplog) -> None:
    cfg = job_config(tmp_path)
    cfg.events.path.path.parent.mkdir(parents=True)
    cfg.events.path.path.write_text("not a table")
    run_expecting(cfg, caplog, 2, f"no Delta table at {cfg.events.path}")


def test_empty_events_table_exits_2(spark, tmp_path: Path, caplog) -> None:
    cfg = job_config(tmp_path)
    write_events(spark, cfg, [])
    run_expecting(cfg, caplog, 2, f"events table at {cfg.events.path} has no valid events")
    assert not (cfg.output.root.path / "segment_membership").exists()


def test_renamed_column_exits_2_naming_the_missing_column(spark, tmp_path: Path, caplog) -> None:
    cfg = job_config(tmp_path)
    write_events(spark, cfg, GOOD_ROWS, schema="user_id string, event string, event_time timestamp, "
                                               "event_value double")
    run_expecting(cfg, caplog, 2, "events source lacks required column 'event_name'",
                  "columns found: user_id, event, event_time, event_value")


def test_changed_type_exits_2_naming_column_and_types(spark, tmp_path: Path, caplog) -> None:
    cfg = job_config(tmp_path)
    write_events(spark, cfg, [("u1", "Open App", True, None)],
                 schema="user_id string, event_name string, event_time boolean, event_value double")
    run_expecting(cfg, caplog, 2, "events column 'event_time' (mapped to 'event_time') has type boolean")


def test_mostly_unparseable_times_stop_the_job_with_counts_per_reason(spark, tmp_path: Path, caplog) -> None:
    cfg = job_config(tmp_path)
    write_events(spark, cfg, [("u1", "Open App", "2026-05-30 10:00:00", None), ("u2", "Open App", "soon", None)],
                 schema="user_id string, event_name string, event_time string, event_value double")
    run_expecting(cfg, caplog, 2, "null_event_time")
    assert not (cfg.output.root.path / "segment_membership").exists()


def test_unknown_event_in_the_config_exits_2_with_the_closest_name(spark, tmp_path: Path, caplog) -> None:
    cfg = job_config(tmp_path, target_event="Purchase Complete")
    write_events(spark, cfg, GOOD_ROWS)
    run_expecting(cfg, caplog, 2, "Purchase Complete", "Purchase Completed")


def test_output_location_under_a_regular_file_exits_2_naming_it(spark, tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the output folder should go")
    segments_file = tmp_path / "segments.yaml"
    segments_file.write_text(SEGMENTS % "Purchase Completed")
    cfg = make_config(tmp_path / "ws", segments_file=str(segments_file), output={"root": str(blocker / "tables")})
    write_events(spark, cfg, GOOD_ROWS)
    run_expecting(cfg, caplog, 2, f"location {blocker / 'tables'} (output.root in config) cannot be created")


SPREAD_ROWS = [("u1", "Open App", T - 60 * DAY, None), ("u1", "Purchase Completed", T - 2 * DAY, 12.5),
               ("u2", "Open App", T - 5 * DAY, None)]


def test_run_date_before_the_history_ends_with_a_status_not_a_crash(spark, tmp_path: Path, caplog) -> None:
    cfg = job_config(tmp_path)
    write_events(spark, cfg, SPREAD_ROWS)
    early = date(2020, 1, 1)
    with caplog.at_level(logging.INFO):
        code = run_job(cfg, [early], None, "auto")
    (run,) = spark.read.format("delta").load(str(cfg.output.root.path / "segment_runs")).collect()
    assert (code, run.run_date, run.status, run.eligible_count) == (0, early, "skipped", 0), run.reason
    assert run.reason == "run date 2020-01-01 is before the events' history (first event 2026-04-02 00:00 UTC)"
    assert "Traceback" not in caplog.text
