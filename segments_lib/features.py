"""Recency / Frequency / Duration features at snapshot times T, in one pass with one shuffle.

Recipe (the plan test in tests/test_features_plan.py holds it to this):

1. keep the events that fall before some snapshot (a broadcast left-semi join on the tiny snapshots
   frame), so K snapshots shuffle the union of their windows once, not K copies;
2. hash-partition by `user_id` — the only shuffle;
3. pair every event with each snapshot it precedes (broadcast join; keeps the partitioning);
4. window functions partitioned by (user, snapshot[, event]) — satisfied by the user partitioning;
5. one `groupBy(user_id, snapshot_time)` of conditional aggregates for every event × window.

Event names are turned into small integer codes before the shuffle so that the hundreds of
conditional aggregates compare integers, not strings. Ages are microseconds `T − event_time`,
so "in window w" is `age <= w` for the half-open window [T − w, T).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable
from datetime import timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from segments_lib.definitions import DurationPair
from segments_lib.feature_spec import (
    GAP_STATS,
    TREND_RECENT,
    FeatureInfo,
    FeatureSpec,
    catalog_markdown,
    feature_catalog,
    feature_columns,
    feature_spec_for,
    freq_name,
    gap_name,
    pair_mean_name,
    pair_unfollowed_name,
    recency_name,
    value_name,
)

__all__ = [
    "FeatureInfo",
    "FeatureSpec",
    "build_features",
    "demo_spec",
    "event_profile",
    "feature_catalog",
    "feature_columns",
    "feature_spec_for",
]

EVENT_COLUMNS = ("user_id", "event_name", "event_time", "event_value")
_US_PER_HOUR = 3_600_000_000
_US_PER_DAY = 24 * _US_PER_HOUR
_BITS = 64  # days per bit_or block for active days


def _us(delta: timedelta) -> int:
    return round(delta.total_seconds() * 1_000_000)


def _require_columns(df: DataFrame, required: Iterable[str], frame: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"build_features: {frame} frame lacks column(s) {missing}; it has {df.columns}")


def _coded_events(spec: FeatureSpec) -> tuple[str, ...]:
    """In-scope events, then pair events outside the scope: index = the integer code of the event."""
    pair_events = [name for pair in spec.duration_pairs for name in (pair.first, pair.then)]
    return tuple(dict.fromkeys((*spec.event_names, *pair_events)))


def _per_snapshot_events(events: DataFrame, snapshots: DataFrame, spec: FeatureSpec) -> DataFrame:
    """(user_id, snapshot_time, code, ts_us, age_us, event_value) for every event before each snapshot."""
    codes = _coded_events(spec)
    snaps = F.broadcast(
        snapshots.select("snapshot_time", F.unix_micros("snapshot_time").alias("t_us")).where(F.col("t_us").isNotNull())
    )
    before = F.col("ts_us") < F.col("t_us")
    if spec.history is not None:
        before &= F.col("ts_us") >= F.col("t_us") - F.lit(_us(spec.history))
    # array_position is 1-based and 0 when absent, so out-of-scope events get code -1
    code = F.array_position(F.array(*[F.lit(n) for n in codes]), F.col("event_name")).cast("int") - 1
    valued = F.lit(False)
    if spec.value_events:
        valued = F.col("event_name").isin(list(spec.value_events))
    slim = events.select(
        F.col("user_id"),
        code.alias("code"),
        F.unix_micros("event_time").alias("ts_us"),
        F.when(valued, F.col("event_value").cast("double")).alias("value"),
    ).where(F.col("ts_us").isNotNull() & F.col("user_id").isNotNull())
    relevant = slim.join(snaps, on=before, how="left_semi")
    return (
        relevant.repartition("user_id")
        .join(snaps, on=before, how="inner")
        .select("user_id", "snapshot_time", "t_us", "code", "ts_us", "value")
        .withColumn("age_us", F.col("t_us") - F.col("ts_us"))
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


def _overall_aggregates(spec: FeatureSpec) -> list[Column]:
    age, p1 = F.col("age_us"), _us(spec.past_window)
    periods = max(1, math.ceil(p1 / _US_PER_DAY))
    # 24 h period k before T holds ages in (k·day, (k+1)·day]; bit k of a bitmask marks it active.
    period = F.floor((age - 1) / F.lit(_US_PER_DAY)).cast("long")
    blocks = [
        F.bit_or(
            F.when(
                (age <= p1) & (period >= start) & (period < start + _BITS),
                # F.shiftleft only takes a constant shift; the SQL function takes a column
                F.call_function("shiftleft", F.lit(1).cast("long"), (period - start).cast("int")),
            )
        ).alias(f"_active_bits_{start}")
        for start in range(0, periods, _BITS)
    ]
    return [
        (F.max(age) / F.lit(_US_PER_DAY)).alias("tenure_days"),
        F.count(F.when(age <= _us(TREND_RECENT), 1)).alias("_n_recent"),
        F.count(F.when(age <= p1, 1)).alias("_n_p1"),
        *blocks,
    ]


def _event_aggregates(spec: FeatureSpec) -> list[Column]:
    codes = _coded_events(spec)
    age, p1 = F.col("age_us"), _us(spec.past_window)
    aggs: list[Column] = []
    for event in spec.event_names:
        is_event = F.col("code") == codes.index(event)
        aggs += [F.count(F.when(is_event & (age <= _us(w)), 1)).alias(freq_name(w, event)) for w in spec.windows]
        aggs.append((F.min(F.when(is_event, age)) / F.lit(_US_PER_DAY)).alias(recency_name(event)))
        gap = F.when(is_event, F.col("gap_h"))
        gap_aggs = {
            "mean": F.avg(gap), "min": F.min(gap), "max": F.max(gap), "std": F.stddev_pop(gap),
            "last": F.max(F.when(is_event & F.col("is_last"), F.col("gap_h"))),
        }
        aggs += [gap_aggs[stat].alias(gap_name(stat, event)) for stat in GAP_STATS]
    for event in spec.value_events:
        value = F.when((F.col("code") == codes.index(event)) & (age <= p1), F.col("value"))
        aggs += [
            F.coalesce(F.sum(value), F.lit(0.0)).alias(value_name("sum", spec, event)),
            F.avg(value).alias(value_name("mean", spec, event)),
            F.max(value).alias(value_name("max", spec, event)),
        ]
    for pair in spec.duration_pairs:
        aggs += _pair_aggregates(pair, codes, p1)
    return aggs


def _pair_aggregates(pair: DurationPair, codes: tuple[str, ...], p1_us: int) -> list[Column]:
    is_first = (F.col("code") == codes.index(pair.first)) & (F.col("age_us") <= p1_us)
    wait_us = F.col(f"next_{codes.index(pair.then)}_us") - F.col("ts_us")
    followed_in_time = wait_us <= _us(pair.within)  # null (no B before T) is not followed
    return [
        F.avg(F.when(is_first, wait_us / F.lit(_US_PER_HOUR))).alias(pair_mean_name(pair)),
        F.count(F.when(is_first & ~F.coalesce(followed_in_time, F.lit(False)), 1)).alias(pair_unfollowed_name(pair)),
    ]


def _finish(aggregated: DataFrame, spec: FeatureSpec) -> DataFrame:
    """Derived features from the aggregates, every feature as a double, in `feature_columns` order."""
    p1_days = spec.past_window / timedelta(days=1)
    bit_blocks = [c for c in aggregated.columns if c.startswith("_active_bits_")]
    derived: dict[str, Column] = {
        f"active_days_{spec.p1}": sum(
            (F.coalesce(F.bit_count(F.col(c)), F.lit(0)) for c in bit_blocks), F.lit(0)
        ),
        f"distinct_events_{spec.p1}": sum(
            (F.when(F.col(freq_name(spec.past_window, e)) > 0, 1).otherwise(0) for e in spec.event_names), F.lit(0)
        ),
    }
    if spec.has_trend:
        recent_days = TREND_RECENT / timedelta(days=1)
        recent_rate = F.col("_n_recent") / F.lit(recent_days)
        rest_rate = (F.col("_n_p1") - F.col("_n_recent")) / F.lit(p1_days - recent_days)
        derived["trend_7d_vs_rest"] = F.when(
            F.col("_n_p1") > 0, (recent_rate - rest_rate) / (recent_rate + rest_rate)
        )
    features = [
        (derived[name] if name in derived else F.col(name)).cast("double").alias(name) for name in feature_columns(spec)
    ]
    return aggregated.select("snapshot_time", "user_id", *features)


def build_features(events: DataFrame, snapshots: DataFrame, spec: FeatureSpec) -> DataFrame:
    """One row per (snapshot_time, user_id) with an event before T; columns `feature_columns(spec)`.

    `events` follows the events contract; `snapshots` has `snapshot_time` (a few rows, broadcast).
    Only events with `event_time < snapshot_time` are read for that snapshot.
    """
    _require_columns(events, EVENT_COLUMNS, "events")
    _require_columns(snapshots, ("snapshot_time",), "snapshots")
    rows = _with_gaps_and_follow_ups(_per_snapshot_events(events, snapshots, spec), spec)
    aggregated = rows.groupBy("user_id", "snapshot_time").agg(*_overall_aggregates(spec), *_event_aggregates(spec))
    return _finish(aggregated, spec)


def event_profile(events: DataFrame) -> tuple[dict[str, int], frozenset[str]]:
    """(occurrences per event name, names with a non-null event_value somewhere): the inputs of
    `feature_spec_for`. One small aggregate, collected once."""
    rows = events.groupBy("event_name").agg(
        F.count(F.lit(1)).alias("n"), F.count("event_value").alias("n_valued")
    ).collect()
    return {r.event_name: int(r.n) for r in rows}, frozenset(r.event_name for r in rows if r.n_valued > 0)


DEMO_EVENTS = (
    "Add to Cart", "Browse Content", "Click Notification", "Content Viewed", "Feature Used",
    "Message Read", "Open App", "Purchase Completed", "Screen Viewed",
)


def demo_spec() -> FeatureSpec:
    """The spec of the `likely_to_purchase` demo segment (conf/segments.yaml); docs/features.md documents it."""
    return FeatureSpec(
        event_names=DEMO_EVENTS,
        windows=(timedelta(days=1), timedelta(days=7), timedelta(days=28)),
        past_window=timedelta(days=28),
        duration_pairs=(DurationPair("Add to Cart", "Purchase Completed", timedelta(hours=24)),),
        value_events=("Purchase Completed",),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Feature engine utilities")
    parser.add_argument("--catalog", action="store_true", help="print the Markdown feature catalog of the demo spec")
    args = parser.parse_args(argv)
    if args.catalog:
        print(catalog_markdown(demo_spec(), "demo segment `likely_to_purchase`"), end="")
    else:
        parser.print_help()


if __name__ == "__main__":
    main()
