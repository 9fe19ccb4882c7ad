"""Recency / Frequency / Duration features at snapshot times T: one sorted timeline per user, one shuffle.

Recipe (the plan test in tests/test_features_plan.py holds it to this):

1. keep the events some snapshot sees (before its T, within `history`): a filter on literal times;
2. hash-partition by `user_id` — the only shuffle;
3. order each user's events once, whatever the number of snapshots K: per event type for the previous
   same-type event (gaps) and backwards per user for the next pair target ("next B after A");
4. cut the timeline into bins at every instant where some snapshot's window starts or ends (T, T − w, …)
   and aggregate per (user, event type, bin) statistics that add up: counts, sums, extremes, sums of
   squared gap deviations, active-day bits on a shared 24 h grid, and the one gap or follow-up per bin
   that reaches across its edge;
5. pair the bins (not the events) with the snapshots after them (a broadcast join) and add them up per
   (user, snapshot, event type) in a hash aggregate; then, as before the timeline, one row per
   (user, snapshot), picking each event type's statistics with conditional aggregates.

Steps 3–5 need no exchange: the rows are already hash-partitioned by user_id. Before the timeline, every
event was paired with each snapshot it precedes and then sorted, so K snapshots cost about K sorts of
the events; that engine is kept in benchmarks/paired_features.py as the oracle of a property test
(tests/test_features_timeline.py) and measured beside this one (benchmarks/RESULTS.md).

Event names are turned into small integer codes before the shuffle so that the hundreds of
conditional aggregates compare integers, not strings. Ages are microseconds `T − event_time`,
so "in window w" is `age <= w` for the half-open window [T − w, T).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable
from dataclasses import dataclass
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


def _snapshot_times(snapshots: DataFrame) -> list[int]:
    """The distinct snapshot times in microseconds, ascending: a few rows, collected once for the bin edges."""
    rows = snapshots.select(F.unix_micros("snapshot_time").alias("t_us")).where(F.col("t_us").isNotNull()).distinct()
    return sorted(int(r.t_us) for r in rows.collect())


def _boundaries(times: list[int], spec: FeatureSpec) -> list[int]:
    """Every instant where some snapshot's window starts or ends: T and T − w for each window, the trend's
    7 days and `history`. Between two consecutive boundaries every window of every snapshot either holds
    all of a user's events or none, so per-bin statistics add up to any snapshot's window exactly."""
    spans = [*spec.windows, TREND_RECENT, *([spec.history] if spec.history is not None else [])]
    return sorted({t - _us(w) for t in times for w in spans} | set(times))


def _bin_of(us: Column, boundaries: list[int]) -> Column:
    """The number of boundaries at or before `us`; null when `us` is null (no previous event, no next B)."""
    return F.when(us.isNotNull(), _binary_search(us, boundaries, 0))


def _binary_search(us: Column, boundaries: list[int], first: int) -> Column:
    """Written as nested CASE WHENs, which whole-stage codegen compiles; a higher-order function over an
    array would run interpreted."""
    if not boundaries:
        return F.lit(first)
    mid = len(boundaries) // 2
    return F.when(us < F.lit(boundaries[mid]), _binary_search(us, boundaries[:mid], first)).otherwise(
        _binary_search(us, boundaries[mid + 1:], first + mid + 1)
    )


@dataclass(frozen=True)
class _DayGrid:
    """Active-day bits on one 24 h grid per class of snapshots that are whole days apart.

    A snapshot T's period k holds ages in (k·day, (k+1)·day]. For snapshots a whole number d of days
    before the class's `anchor` A, period k of T is period k + d of A, so one bitmask per bin on A's grid
    serves every snapshot of the class, shifted by d.
    """

    anchors: tuple[int, ...]  # the latest snapshot of each class (classes = snapshot times mod 24 h)
    blocks: tuple[int, ...]  # 64-bit words each class's grid needs: its oldest snapshot's P1 periods
    periods: int  # 24 h periods in P1 (the engine's output has ceil(periods / 64) words)

    @staticmethod
    def of(times: list[int], past_window_us: int) -> _DayGrid:
        periods = max(1, math.ceil(past_window_us / _US_PER_DAY))
        anchors: dict[int, int] = {}
        oldest: dict[int, int] = {}
        for t in times:
            anchors[t % _US_PER_DAY] = max(anchors.get(t % _US_PER_DAY, t), t)
            oldest[t % _US_PER_DAY] = min(oldest.get(t % _US_PER_DAY, t), t)
        classes = sorted(anchors)
        return _DayGrid(
            anchors=tuple(anchors[c] for c in classes),
            blocks=tuple(math.ceil(((anchors[c] - oldest[c]) // _US_PER_DAY + periods) / _BITS) for c in classes),
            periods=periods,
        )

    def event_bits(self, ts_us: Column) -> dict[str, Column]:
        """Per class and word (`grid_<class>_<word>`): the bit of the event's period on the class's grid."""
        bits = {}
        for cls, (anchor, blocks) in enumerate(zip(self.anchors, self.blocks, strict=True)):
            period = F.floor((F.lit(anchor) - ts_us - 1) / F.lit(_US_PER_DAY)).cast("long")
            for word in range(blocks):
                start = word * _BITS
                bits[f"grid_{cls}_{word}"] = F.when(
                    (period >= start) & (period < start + _BITS),
                    # F.shiftleft only takes a constant shift; the SQL function takes a column
                    F.call_function("shiftleft", F.lit(1).cast("long"), (period - start).cast("int")),
                )
        return bits

    def snapshot_columns(self, t_us: Column) -> list[Column]:
        """For each snapshot: its class and, per output word, the grid word and bit offset it starts at."""
        cls, anchor_of = F.lit(0), F.lit(0).cast("long")
        for index, anchor in enumerate(self.anchors):
            of_class = F.pmod(t_us, F.lit(_US_PER_DAY)) == F.lit(anchor % _US_PER_DAY)
            cls = F.when(of_class, F.lit(index)).otherwise(cls)
            anchor_of = F.when(of_class, F.lit(anchor)).otherwise(anchor_of)
        days_back = ((anchor_of - t_us) / F.lit(_US_PER_DAY)).cast("int")
        columns = [cls.alias("grid_class")]
        for start in range(0, self.periods, _BITS):
            columns += [((days_back + start) / _BITS).cast("int").alias(f"grid_word_{start}"),
                        ((days_back + start) % _BITS).alias(f"grid_shift_{start}")]
        return columns

    def snapshot_bits(self, start: int) -> Column:
        """The snapshot's bits of periods start … start + 63, cut from the grid words of its class."""

        def word(offset: int) -> Column:
            picked = F.lit(0).cast("long")
            for cls, blocks in enumerate(self.blocks):
                for w in range(blocks):
                    hit = (F.col("grid_class") == cls) & (F.col(f"grid_word_{start}") + offset == w)
                    picked = F.when(hit, F.coalesce(F.col(f"grid_{cls}_{w}"), F.lit(0).cast("long"))).otherwise(picked)
            return picked

        shift = F.col(f"grid_shift_{start}")
        # Java shifts count mod 64, so a zero shift cannot borrow "64 − 0" bits from the next word.
        return F.when(shift == 0, word(0)).otherwise(
            F.call_function("shiftrightunsigned", word(0), shift).bitwiseOR(
                F.call_function("shiftleft", word(1), F.lit(_BITS) - shift))
        )


def slim_events(events: DataFrame, spec: FeatureSpec) -> DataFrame:
    """(user_id, code, ts_us, value): what the pass reads of each event, with the event name as its code
    (-1 outside the spec) and the value kept only for the spec's valued events."""
    # array_position is 1-based and 0 when absent, so out-of-scope events get code -1
    code = F.array_position(F.array(*[F.lit(n) for n in _coded_events(spec)]), F.col("event_name")).cast("int") - 1
    valued = F.lit(False)
    if spec.value_events:
        valued = F.col("event_name").isin(list(spec.value_events))
    return events.select(
        F.col("user_id"),
        code.alias("code"),
        F.unix_micros("event_time").alias("ts_us"),
        F.when(valued, F.col("event_value").cast("double")).alias("value"),
    ).where(F.col("ts_us").isNotNull() & F.col("user_id").isNotNull())


def _timeline(events: DataFrame, times: list[int], spec: FeatureSpec) -> DataFrame:
    """(user_id, code, ts_us, value, prev_us, gap_ref_h, next_<code>_us…): each relevant event once, on one
    ordering of the user's events. `prev_us` is the previous event of the same type, `next_<c>_us` the
    earliest event of pair target c at or after this one, both over the whole timeline; whether a
    snapshot sees them is decided per bin later."""
    codes = _coded_events(spec)
    ts = F.col("ts_us")
    # Only events some snapshot can see: before its T and, with a bounded history, within it.
    visible = ts < F.lit(max(times)) if times else F.lit(False)
    if spec.history is not None:
        visible = F.lit(False)
        for t in times:
            visible |= (ts < F.lit(t)) & (ts >= F.lit(t - _us(spec.history)))
    same_type = Window.partitionBy("user_id", "code").orderBy("ts_us")
    # Descending order with a growing frame: "the earliest B at or after this row" in O(n) per partition.
    from_here_on = (
        Window.partitionBy("user_id")
        .orderBy(F.col("ts_us").desc())
        .rangeBetween(Window.unboundedPreceding, Window.currentRow)
    )
    then_codes = sorted({codes.index(p.then) for p in spec.duration_pairs})
    next_b = [
        F.min(F.when(F.col("code") == c, F.col("ts_us"))).over(from_here_on).alias(f"next_{c}_us") for c in then_codes
    ]
    return slim_events(events, spec).where(visible).repartition("user_id").select(
        "*",
        F.lag("ts_us", 1).over(same_type).alias("prev_us"),
        # The user's first gap of this type: the reference the gap deviations are taken from, constant per
        # (user, type), so bins can add sums of squared deviations without losing the small spreads.
        ((F.nth_value("ts_us", 2).over(same_type) - F.first("ts_us").over(same_type)) / F.lit(_US_PER_HOUR))
        .alias("gap_ref_h"),
        *next_b,
    )


def _per_bin(timeline: DataFrame, times: list[int], spec: FeatureSpec, grid: _DayGrid) -> DataFrame:
    """One row per (user, event code, bin) with statistics that add up across bins.

    A gap whose previous event is in the same bin is "inner": a snapshot counts it iff the bin is in P1.
    The bin's first gap may reach back into an earlier bin ("entry"): it is kept apart with its start,
    since a snapshot counts it iff that start is in P1. Likewise for pairs, A events whose next B is in the
    same bin are "inner" and the rest all share one next B ("exit", the first B after the bin), which a
    snapshot sees iff it is before T.
    """
    boundaries = _boundaries(times, spec)
    ts, prev = F.col("ts_us"), F.col("prev_us")
    bin_ = _bin_of(ts, boundaries)
    inner_gap = F.coalesce(_bin_of(prev, boundaries) == bin_, F.lit(False))
    gap_h = (ts - prev) / F.lit(_US_PER_HOUR)
    deviation = gap_h - F.col("gap_ref_h")
    inner = F.when(inner_gap, gap_h)
    codes = _coded_events(spec)
    pair_stats: list[Column] = []
    for index, pair in enumerate(spec.duration_pairs):
        next_b = F.col(f"next_{codes.index(pair.then)}_us")
        is_first = F.col("code") == codes.index(pair.first)
        same_bin = F.coalesce(_bin_of(next_b, boundaries) == bin_, F.lit(False))
        wait = next_b - ts
        followed = wait <= F.lit(_us(pair.within))
        inner_a, exit_a = is_first & same_bin, is_first & ~same_bin
        pair_stats += [
            F.count(F.when(inner_a, 1)).alias(f"pair_inner_n_{index}"),
            F.sum(F.when(inner_a, wait)).alias(f"pair_inner_wait_{index}"),
            F.count(F.when(inner_a & followed, 1)).alias(f"pair_inner_followed_{index}"),
            F.count(F.when(exit_a, 1)).alias(f"pair_exit_n_{index}"),
            F.sum(F.when(exit_a, wait)).alias(f"pair_exit_wait_{index}"),
            F.count(F.when(exit_a & followed, 1)).alias(f"pair_exit_followed_{index}"),
            F.max(F.when(exit_a, next_b)).alias(f"pair_exit_next_{index}"),
        ]
    return timeline.groupBy("user_id", "code", bin_.alias("bin")).agg(
        F.count(F.lit(1)).alias("n"),
        F.min(ts).alias("min_ts"),
        F.max(ts).alias("max_ts"),
        # prev never decreases along the ordering, so the largest is the last event's (ties: its tied twin)
        F.max(prev).alias("last_prev"),
        F.min(F.when(~inner_gap, prev)).alias("entry_prev"),
        F.max("gap_ref_h").alias("gap_ref_h"),
        F.count(inner).alias("gap_inner_n"),
        F.min(inner).alias("gap_inner_min"),
        F.max(inner).alias("gap_inner_max"),
        F.sum(F.when(inner_gap, deviation)).alias("gap_inner_dev"),
        F.sum(F.when(inner_gap, deviation * deviation)).alias("gap_inner_dev2"),
        F.sum("value").alias("value_sum"),
        F.count("value").alias("value_n"),
        F.max("value").alias("value_max"),
        *[F.bit_or(bit).alias(name) for name, bit in grid.event_bits(ts).items()],
        *pair_stats,
    )


def _single_event_bins(timeline: DataFrame, spec: FeatureSpec, grid: _DayGrid) -> DataFrame:
    """The bins of a single snapshot: each event its own bin, in `_per_bin`'s columns.

    With one snapshot nothing is shared between snapshots, so aggregating bins first would only add a
    pass: every gap is an "entry" gap and every A event an "exit" with its own next B.
    """
    ts, prev, value = F.col("ts_us"), F.col("prev_us"), F.col("value")
    none_long, none_double = F.lit(None).cast("long"), F.lit(None).cast("double")
    codes = _coded_events(spec)
    pair_columns: list[Column] = []
    for index, pair in enumerate(spec.duration_pairs):
        next_b = F.col(f"next_{codes.index(pair.then)}_us")
        is_first = F.col("code") == codes.index(pair.first)
        wait = next_b - ts
        pair_columns += [
            F.lit(0).cast("long").alias(f"pair_inner_n_{index}"),
            none_long.alias(f"pair_inner_wait_{index}"),
            F.lit(0).cast("long").alias(f"pair_inner_followed_{index}"),
            is_first.cast("long").alias(f"pair_exit_n_{index}"),
            F.when(is_first, wait).alias(f"pair_exit_wait_{index}"),
            (is_first & F.coalesce(wait <= F.lit(_us(pair.within)), F.lit(False))).cast("long")
            .alias(f"pair_exit_followed_{index}"),
            F.when(is_first, next_b).alias(f"pair_exit_next_{index}"),
        ]
    return timeline.select(
        "user_id", "code",
        F.lit(1).cast("long").alias("n"), ts.alias("min_ts"), ts.alias("max_ts"),
        prev.alias("last_prev"), prev.alias("entry_prev"), "gap_ref_h",
        F.lit(0).cast("long").alias("gap_inner_n"), none_double.alias("gap_inner_min"),
        none_double.alias("gap_inner_max"), none_double.alias("gap_inner_dev"), none_double.alias("gap_inner_dev2"),
        value.alias("value_sum"), value.isNotNull().cast("long").alias("value_n"), value.alias("value_max"),
        *[bit.alias(name) for name, bit in grid.event_bits(ts).items()],
        *pair_columns,
    )


def _per_event_type(bins: DataFrame, snapshots: DataFrame, spec: FeatureSpec, grid: _DayGrid) -> DataFrame:
    """One row per (user, snapshot, event code) with the statistics `_per_user` picks from, each the sum,
    minimum or maximum of the bins before T (and within `history`) whose window covers them.

    Pairing bins, not events, with snapshots is what keeps K snapshots cheap: a bin holds all of a user's
    events of one type between two boundaries, and the bins are paired in a hash aggregate, not sorted.
    """
    t = F.col("t_us")
    snaps = snapshots.select("snapshot_time", F.unix_micros("snapshot_time").alias("t_us")).where(t.isNotNull())
    snaps = F.broadcast(snaps.select("*", *grid.snapshot_columns(t)))
    before = F.col("max_ts") < t
    if spec.history is not None:
        before &= F.col("min_ts") >= t - F.lit(_us(spec.history))

    def within(window: timedelta) -> Column:
        return F.col("min_ts") >= t - F.lit(_us(window))

    def total(condition: Column, column: Column | str) -> Column:
        """Σ column over the bins meeting condition; 0 when none does."""
        column = F.col(column) if isinstance(column, str) else column
        return F.coalesce(F.sum(F.when(condition, column)), F.lit(0))

    in_p1 = within(spec.past_window)
    entry_h = (F.col("min_ts") - F.col("entry_prev")) / F.lit(_US_PER_HOUR)
    entry = F.coalesce(F.col("entry_prev") >= t - F.lit(_us(spec.past_window)), F.lit(False))
    entry_dev = entry_h - F.col("gap_ref_h")
    gap_n = total(in_p1, "gap_inner_n") + total(entry, F.lit(1))
    dev = total(in_p1, "gap_inner_dev") + total(entry, entry_dev)
    dev2 = total(in_p1, "gap_inner_dev2") + total(entry, entry_dev * entry_dev)
    # prev never decreases along a type's ordering, so the largest before T is the last event's
    last_ts, last_prev = F.max("max_ts"), F.max("last_prev")
    value_n = total(in_p1, "value_n")
    pair_stats: list[Column] = []
    for index in range(len(spec.duration_pairs)):
        seen = F.coalesce(F.col(f"pair_exit_next_{index}") < t, F.lit(False))
        waits = total(in_p1, f"pair_inner_wait_{index}") + total(in_p1 & seen, f"pair_exit_wait_{index}")
        waited = total(in_p1, f"pair_inner_n_{index}") + total(in_p1 & seen, f"pair_exit_n_{index}")
        exit_followed = F.when(seen, F.col(f"pair_exit_followed_{index}")).otherwise(0)
        unfollowed = F.col("n") - F.col(f"pair_inner_followed_{index}") - exit_followed
        pair_stats += [
            F.when(waited > 0, waits / F.lit(_US_PER_HOUR) / waited).alias(f"pair_mean_{index}"),
            total(in_p1, unfollowed).alias(f"pair_unfollowed_{index}"),
        ]
    return bins.join(snaps, on=before, how="inner").groupBy("user_id", "snapshot_time", "t_us", "code").agg(
        F.max(t - F.col("min_ts")).alias("max_age"),
        F.min(t - F.col("max_ts")).alias("min_age"),
        F.sum("n").alias("n_all"),
        *[total(within(w), "n").alias(f"n_{i}") for i, w in enumerate(spec.windows)],
        total(within(TREND_RECENT), "n").alias("n_recent"),
        *[F.bit_or(F.when(in_p1, grid.snapshot_bits(start))).alias(f"active_bits_{start}")
          for start in range(0, grid.periods, _BITS)],
        F.when(gap_n > 0, F.max("gap_ref_h") + dev / gap_n).alias("gap_mean"),
        F.min(F.least(F.when(in_p1, F.col("gap_inner_min")), F.when(entry, entry_h))).alias("gap_min"),
        F.max(F.greatest(F.when(in_p1, F.col("gap_inner_max")), F.when(entry, entry_h))).alias("gap_max"),
        # population variance from deviations about the user's first gap: Σd²/n − (Σd/n)²
        F.when(gap_n > 0, F.sqrt(F.greatest(dev2 / gap_n - (dev / gap_n) * (dev / gap_n), F.lit(0.0))))
        .alias("gap_std"),
        F.when(last_prev >= t - F.lit(_us(spec.past_window)), (last_ts - last_prev) / F.lit(_US_PER_HOUR))
        .alias("gap_last"),
        F.sum(F.when(in_p1, F.col("value_sum"))).alias("value_sum"),
        F.when(value_n > 0, F.sum(F.when(in_p1, F.col("value_sum"))) / value_n).alias("value_mean"),
        F.max(F.when(in_p1, F.col("value_max"))).alias("value_max"),
        *pair_stats,
    )


def _per_user(per_type: DataFrame, spec: FeatureSpec) -> DataFrame:
    """Last step: one row per (user, snapshot); each event's statistic is picked from its code's row."""
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
    times = _snapshot_times(snapshots)
    grid = _DayGrid.of(times, _us(spec.past_window))
    timeline = _timeline(events, times, spec)
    bins = _per_bin(timeline, times, spec, grid) if len(times) > 1 else _single_event_bins(timeline, spec, grid)
    return _finish(_per_user(_per_event_type(bins, snapshots, spec, grid), spec), spec)


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
