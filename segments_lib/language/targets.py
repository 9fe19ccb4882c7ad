"""Target definition → labels: did the target happen for each (snapshot, user) in [T, T + P3)?

The whole target tree is compiled into one plan: per-event window columns (for `sequence`), one set
of conditional aggregates per (snapshot, user), optional per-snapshot ranks (for `value_sum` with
`top_fraction`) and a boolean expression over them. Events are joined once to the broadcast
snapshot list with a range condition and grouped once, however many terms the target has.
"""

from __future__ import annotations

from datetime import timedelta
from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from segments_lib.language.definitions import (
    Absent,
    AllOf,
    AnyOf,
    Occurs,
    Sequence,
    Target,
    ValueSum,
    label_horizon,
    target_events,
)

KEYS = ("snapshot_time", "user_id")


class _Plan:
    """Columns the target needs, collected while walking the tree; names are private (`_t<n>_...`)."""
    def __init__(self, prediction_window: timedelta) -> None:
        self.in_window = F.col("event_time") < F.col("snapshot_time") + F.lit(prediction_window)
        self.event_columns: list[Column] = []  # window columns over one user's events, before grouping
        self.aggregates: list[Column] = []  # one row per (snapshot, user); empty aggregates mean 0
        self.aggregate_names: list[str] = []
        self.ranks: list[Column] = []  # computed across the population of a snapshot

    def _aggregate(self, column: Column, stem: str) -> Column:
        name = f"_t{len(self.aggregate_names)}_{stem}"
        self.aggregates.append(column.alias(name))
        self.aggregate_names.append(name)
        return F.col(name)

    def compile(self, target: Target) -> Column:
        """The boolean condition for `target`, registering the columns it reads."""
        if isinstance(target, AllOf):
            return reduce(lambda a, b: a & b, (self.compile(t) for t in target.terms))
        if isinstance(target, AnyOf):
            return reduce(lambda a, b: a | b, (self.compile(t) for t in target.terms))
        if isinstance(target, Occurs):
            return self._occurs(target)
        if isinstance(target, Absent):
            matching = F.col("event_name").isin(list(target.events)) & self.in_window
            return self._aggregate(F.count(F.when(matching, True)), "count") == 0
        if isinstance(target, ValueSum):
            return self._value_sum(target)
        if isinstance(target, Sequence):
            return self._sequence(target)
        raise TypeError(f"unknown target term {type(target).__name__}")

    def _occurs(self, target: Occurs) -> Column:
        matching = F.col("event_name").isin(list(target.events)) & self.in_window
        if target.value_at_least is not None:
            matching = matching & (F.col("event_value") >= F.lit(target.value_at_least))
        if target.value_at_most is not None:
            matching = matching & (F.col("event_value") <= F.lit(target.value_at_most))
        return self._aggregate(F.count(F.when(matching, True)), "count") >= target.min_count

    def _value_sum(self, target: ValueSum) -> Column:
        matching = F.col("event_name").isin(list(target.events)) & self.in_window
        total = self._aggregate(F.sum(F.when(matching, F.col("event_value"))), "sum")
        total_name = self.aggregate_names[-1]
        if target.at_least is not None:
            return total >= F.lit(target.at_least)
        # Share of the snapshot's population whose sum is at least this user's: ties stay together,
        # and a tied group that would overflow the fraction is left out rather than split arbitrarily.
        rank_name = f"{total_name}_share"
        by_sum = Window.partitionBy("snapshot_time").orderBy(total.desc())  # ranking functions take no frame
        self.ranks.append(F.cume_dist().over(by_sum).alias(rank_name))
        return (total > 0) & (F.col(rank_name) <= F.lit(target.top_fraction))

    def _sequence(self, target: Sequence) -> Column:
        followed_name = f"_t{len(self.aggregate_names)}_followed"
        # Frame [a, a + H] on the event time in microseconds: a B at exactly a + H counts as following,
        # and a B at the same instant as A is a peer inside the frame.
        follow_up = (
            Window.partitionBy(*KEYS)
            .orderBy(F.unix_micros("event_time"))
            .rangeBetween(0, int(target.within / timedelta(microseconds=1)))
        )
        self.event_columns.append(
            F.max(F.when(F.col("event_name") == target.then, 1)).over(follow_up).alias(followed_name)
        )
        abandoned = (F.col("event_name") == target.first) & self.in_window & F.col(followed_name).isNull()
        return self._aggregate(F.max(F.when(abandoned, 1)), "abandoned") == 1


def build_labels(events: DataFrame, population: DataFrame, target: Target, prediction_window: timedelta) -> DataFrame:
    """`snapshot_time`, `user_id`, `label` (0/1) for every population row.

    Events count when T ≤ event_time < T + P3; a sequence's follow-up B is looked for up to A + H,
    which may lie after T + P3. Users without events in the window get the label of empty aggregates
    (absent → 1, occurs → 0).
    """
    plan = _Plan(prediction_window)
    condition = plan.compile(target)
    horizon = label_horizon(target, prediction_window)
    snapshots = population.select("snapshot_time").distinct()
    in_horizon = (F.col("event_time") >= F.col("snapshot_time")) & (
        F.col("event_time") < F.col("snapshot_time") + F.lit(horizon)
    )
    windowed = (
        events.where(F.col("event_name").isin(list(target_events(target))))
        .select("user_id", "event_name", "event_time", "event_value")
        .join(F.broadcast(snapshots), on=in_horizon, how="inner")
    )
    if plan.event_columns:
        windowed = windowed.select("*", *plan.event_columns)
    per_user = windowed.groupBy(*KEYS).agg(*plan.aggregates)
    filled = population.select(*KEYS).join(per_user, on=list(KEYS), how="left").select(
        *KEYS, *(F.coalesce(F.col(name), F.lit(0)).alias(name) for name in plan.aggregate_names)
    )
    if plan.ranks:
        filled = filled.select("*", *plan.ranks)
    return filled.select(*KEYS, condition.cast("int").alias("label"))
