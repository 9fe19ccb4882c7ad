"""The pairing feature pass, kept as the oracle of the timeline engine and as the benchmark's "before".

This was `segments_lib.features.engine` up to December 2026: every event is paired with each snapshot it
precedes (a broadcast join), and the window functions then run on the K-times larger paired rows. The
timeline engine (`build_features`) replaced it because K snapshots cost K times the sort; the property
test (tests/test_features_timeline.py) holds the two to identical features, and `benchmarks.features`
measures them side by side. Steps 4 and 5 (one row per user, derived features) are the engine's own
`_per_user` and `_finish`, unchanged by the redesign and covered by the hand-computed tests in
tests/test_features.py.
"""

from __future__ import annotations

import math

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from segments_lib.features.engine import (
    _BITS,
    _US_PER_DAY,
    _US_PER_HOUR,
    EVENT_COLUMNS,
    _coded_events,
    _finish,
    _per_user,
    _require_columns,
    _us,
    slim_events,
)
from segments_lib.features.spec import TREND_RECENT, FeatureSpec


def _per_snapshot_events(events: DataFrame, snapshots: DataFrame, spec: FeatureSpec) -> DataFrame:
    """(user_id, snapshot_time, t_us, code, ts_us, value, age_us) for every event before each snapshot."""
    snaps = F.broadcast(
        snapshots.select("snapshot_time", F.unix_micros("snapshot_time").alias("t_us")).where(F.col("t_us").isNotNull())
    )
    before = F.col("ts_us") < F.col("t_us")
    if spec.history is not None:
        before &= F.col("ts_us") >= F.col("t_us") - F.lit(_us(spec.history))
    relevant = slim_events(events, spec).join(snaps, on=before, how="left_semi")
    return (
        relevant.repartition("user_id")
        .join(snaps, on=before, how="inner")
        .select(
            "user_id", "snapshot_time", "t_us", "code", "ts_us", "value",
            (F.col("t_us") - F.col("ts_us")).alias("age_us"),
        )
    )


def _with_gaps_and_follow_ups(rows: DataFrame, spec: FeatureSpec) -> DataFrame:
    """Adds `gap_h` (hours since the previous same-type event, both in P1), `is_last` (last of its type
    before T) and `next_<code>_us` (the earliest pair target at or after the row) per pair target."""
    same_type = Window.partitionBy("user_id", "snapshot_time", "code").orderBy("ts_us")
    # Descending order with a growing frame: "the earliest B at or after this row" in O(n) per partition.
    from_here_on = (
        Window.partitionBy("user_id", "snapshot_time")
        .orderBy(F.col("ts_us").desc())
        .rangeBetween(Window.unboundedPreceding, Window.currentRow)
    )
    codes = _coded_events(spec)
    then_codes = sorted({codes.index(p.then) for p in spec.duration_pairs})
    next_b = [
        F.min(F.when(F.col("code") == c, F.col("ts_us"))).over(from_here_on).alias(f"next_{c}_us") for c in then_codes
    ]
    with_neighbours = rows.select(
        "*",
        F.lag("ts_us", 1).over(same_type.rowsBetween(-1, -1)).alias("prev_us"),
        F.lead("ts_us", 1).over(same_type.rowsBetween(1, 1)).alias("next_same_us"),
        *next_b,
    )
    in_p1 = F.col("prev_us") >= F.col("t_us") - F.lit(_us(spec.past_window))
    # With ties at the last instant the last row's predecessor shares its time, so its gap is 0 h.
    return with_neighbours.select(
        "*",
        F.when(in_p1, (F.col("ts_us") - F.col("prev_us")) / F.lit(_US_PER_HOUR)).alias("gap_h"),
        F.col("next_same_us").isNull().alias("is_last"),
    )


def _per_event_type(rows: DataFrame, spec: FeatureSpec) -> DataFrame:
    """Step 1 of the aggregation: one row per (user, snapshot, event code) with a few generic statistics.

    Aggregating per event code first keeps each aggregate narrow (about 20 columns whatever the number of
    event types), so Spark compiles it with whole-stage codegen; a single aggregate with one column per
    event × statistic exceeds `spark.sql.codegen.maxFields` and runs interpreted, about 10× slower. It
    needs no exchange: the rows are already hash-partitioned by user_id.
    """
    age, p1 = F.col("age_us"), _us(spec.past_window)
    in_p1 = age <= p1
    # 24 h period k before T holds ages in (k·day, (k+1)·day]; bit k of a bitmask marks it active.
    period = F.floor((age - 1) / F.lit(_US_PER_DAY)).cast("long")
    periods = max(1, math.ceil(p1 / _US_PER_DAY))
    bits = [
        F.bit_or(
            F.when(
                in_p1 & (period >= start) & (period < start + _BITS),
                # F.shiftleft only takes a constant shift; the SQL function takes a column
                F.call_function("shiftleft", F.lit(1).cast("long"), (period - start).cast("int")),
            )
        ).alias(f"active_bits_{start}")
        for start in range(0, periods, _BITS)
    ]
    codes = _coded_events(spec)
    pair_stats: list[Column] = []
    for index, pair in enumerate(spec.duration_pairs):
        wait_us = F.col(f"next_{codes.index(pair.then)}_us") - F.col("ts_us")
        followed = F.coalesce(wait_us <= _us(pair.within), F.lit(False))  # no B before T: not followed
        pair_stats += [
            F.avg(F.when(in_p1, wait_us / F.lit(_US_PER_HOUR))).alias(f"pair_mean_{index}"),
            F.count(F.when(in_p1 & ~followed, 1)).alias(f"pair_unfollowed_{index}"),
        ]
    value = F.when(in_p1, F.col("value"))
    return rows.groupBy("user_id", "snapshot_time", "code").agg(
        F.max(age).alias("max_age"),
        F.min(age).alias("min_age"),
        F.count(F.lit(1)).alias("n_all"),
        *[F.count(F.when(age <= _us(w), 1)).alias(f"n_{i}") for i, w in enumerate(spec.windows)],
        F.count(F.when(age <= _us(TREND_RECENT), 1)).alias("n_recent"),
        *bits,
        F.avg("gap_h").alias("gap_mean"),
        F.min("gap_h").alias("gap_min"),
        F.max("gap_h").alias("gap_max"),
        F.stddev_pop("gap_h").alias("gap_std"),
        F.max(F.when(F.col("is_last"), F.col("gap_h"))).alias("gap_last"),
        F.sum(value).alias("value_sum"),
        F.avg(value).alias("value_mean"),
        F.max(value).alias("value_max"),
        *pair_stats,
    )


def build_paired_features(events: DataFrame, snapshots: DataFrame, spec: FeatureSpec) -> DataFrame:
    """The same contract as `segments_lib.features.engine.build_features`, by pairing events with snapshots."""
    _require_columns(events, EVENT_COLUMNS, "events")
    _require_columns(snapshots, ("snapshot_time",), "snapshots")
    rows = _with_gaps_and_follow_ups(_per_snapshot_events(events, snapshots, spec), spec)
    return _finish(_per_user(_per_event_type(rows, spec), spec), spec)
