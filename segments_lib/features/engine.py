"""Recency / Frequency / Duration features at snapshot times T, in one pass with one shuffle.

Recipe (the plan test in tests/test_features_plan.py holds it to this):

1. keep the events that fall before some snapshot (a broadcast left-semi join on the tiny snapshots
   frame), so K snapshots shuffle the union of their windows once, not K copies;
2. hash-partition by `user_id` — the only shuffle;
3. pair every event with each snapshot it precedes (broadcast join; keeps the partitioning);
4. window functions partitioned by (user, snapshot[, event]) — satisfied by the user partitioning;
5. aggregate per (user, snapshot, event type), then per (user, snapshot), picking each event type's
   statistics with conditional aggregates — both on the same user partitioning, so no new exchange.

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

from segments_lib.features.spec import (
    GAP_STATS,
    TREND_RECENT,
    FeatureInfo,
    FeatureSpec,
    base_name,
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
from segments_lib.language.definitions import DurationPair

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
    """(user_id, snapshot_time, t_us, code, ts_us, value, age_us) for every event before each snapshot."""
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


def _per_user(per_type: DataFrame, spec: FeatureSpec) -> DataFrame:
    """Step 2: one row per (user, snapshot); each event's statistic is picked from its code's row."""
    codes = _coded_events(spec)
    p1_count = F.col(f"n_{len(spec.windows) - 1}")

    def of(event: str, column: str) -> Column:
        return F.max(F.when(F.col("code") == codes.index(event), F.col(column)))

    in_scope = F.col("code").between(0, len(spec.event_names) - 1)
    aggs: list[Column] = [
        (F.max("max_age") / F.lit(_US_PER_DAY)).alias("tenure_days"),
        F.sum("n_recent").alias("_n_recent"),
        F.sum(p1_count).alias("_n_p1"),
        F.count(F.when(in_scope & (p1_count > 0), 1)).alias(f"distinct_events_{spec.p1}"),
        *[F.bit_or(c).alias(c) for c in per_type.columns if c.startswith("active_bits_")],
    ]
    for event in spec.event_names:
        aggs += [of(event, f"n_{i}").alias(freq_name(w, event)) for i, w in enumerate(spec.windows)]
        aggs.append((of(event, "min_age") / F.lit(_US_PER_DAY)).alias(recency_name(event)))
        aggs += [of(event, f"gap_{stat}").alias(gap_name(stat, event)) for stat in GAP_STATS]
    for event in spec.value_events:
        aggs += [of(event, f"value_{stat}").alias(value_name(stat, spec, event)) for stat in ("sum", "mean", "max")]
    for index, pair in enumerate(spec.duration_pairs):
        aggs += [
            of(pair.first, f"pair_mean_{index}").alias(pair_mean_name(pair)),
            of(pair.first, f"pair_unfollowed_{index}").alias(pair_unfollowed_name(pair)),
        ]
    for event in spec.base_events:
        aggs += [
            of(event, "n_all").alias(base_name("count_all", event)),
            (of(event, "max_age") / F.lit(_US_PER_DAY)).alias(base_name("first_days", event)),
            ((of(event, "max_age") - of(event, "min_age")) / F.lit(_US_PER_DAY)).alias(base_name("span_days", event)),
        ]
    return per_type.groupBy("user_id", "snapshot_time").agg(*aggs)


def _finish(aggregated: DataFrame, spec: FeatureSpec) -> DataFrame:
    """Derived features, zeros for counts of absent events, every feature a double, in `feature_columns` order."""
    p1_days = spec.past_window / timedelta(days=1)
    bit_blocks = [c for c in aggregated.columns if c.startswith("active_bits_")]
    derived: dict[str, Column] = {
        f"active_days_{spec.p1}": sum((F.coalesce(F.bit_count(F.col(c)), F.lit(0)) for c in bit_blocks), F.lit(0)),
    }
    zero_when_absent = {freq_name(w, e) for e in spec.event_names for w in spec.windows}
    zero_when_absent |= {value_name("sum", spec, e) for e in spec.value_events}
    zero_when_absent |= {pair_unfollowed_name(p) for p in spec.duration_pairs}
    derived |= {name: F.coalesce(F.col(name), F.lit(0)) for name in zero_when_absent}
    for event in spec.base_events:
        count, first = F.coalesce(F.col(base_name("count_all", event)), F.lit(0)), F.col(base_name("first_days", event))
        span = F.col(base_name("span_days", event))
        derived[base_name("count_all", event)] = count
        # Every counted event is strictly before T, so first_days > 0 whenever the event happened.
        derived[base_name("rate_all", event)] = F.coalesce(count / first, F.lit(0.0))
        mean_gap = span / (count - F.lit(1))
        derived[base_name("silence_to_gap", event)] = F.when(
            (count >= 2) & (span > 0), F.col(recency_name(event)) / mean_gap)
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
    return _finish(_per_user(_per_event_type(rows, spec), spec), spec)


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
        base_events=("Purchase Completed",),
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
