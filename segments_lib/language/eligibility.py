"""Who is eligible at each snapshot T: users seen before T, narrowed by the segment's `eligible` rules.

Only events strictly before T are read (half-open time), via one join of the events to the broadcast
snapshot list and one grouping per (snapshot, user) with a conditional aggregate per rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType, TimestampType

from segments_lib.language.definitions import Eligibility

SNAPSHOT_SCHEMA = StructType([StructField("snapshot_time", TimestampType(), nullable=False)])


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes are read as UTC (the project's convention), never as the machine's local time."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def snapshot_frame(spark: SparkSession, times: Sequence[datetime]) -> DataFrame:
    """A one-column `snapshot_time` frame, one row per distinct time."""
    distinct = sorted({as_utc(t) for t in times})
    return spark.createDataFrame([(t,) for t in distinct], schema=SNAPSHOT_SCHEMA)


def eligible_population(events: DataFrame, snapshots: DataFrame, eligibility: Eligibility) -> DataFrame:
    """`snapshot_time`, `user_id` for each user with an event before T who passes every rule.

    active_in: some event in [T − active_in, T). has_done: each listed event at least once before T
    (within `lookback` when set). not_done: none of the listed events before T (within `lookback`).
    """
    before = events.select("user_id", "event_name", "event_time").join(
        F.broadcast(snapshots.select("snapshot_time")), on=F.col("event_time") < F.col("snapshot_time"), how="inner"
    )
    in_lookback = (
        F.col("event_time") >= F.col("snapshot_time") - F.lit(eligibility.lookback)
        if eligibility.lookback is not None
        else F.lit(True)
    )
    aggregates: list[Column] = [F.count(F.lit(1)).alias("_events")]
    passes: list[Column] = []
    if eligibility.active_in is not None:
        recent = F.col("event_time") >= F.col("snapshot_time") - F.lit(eligibility.active_in)
        aggregates.append(F.max(F.when(recent, 1)).alias("_active"))
        passes.append(F.col("_active").isNotNull())
    for i, name in enumerate(eligibility.has_done):
        aggregates.append(F.max(F.when((F.col("event_name") == name) & in_lookback, 1)).alias(f"_has_done_{i}"))
        passes.append(F.col(f"_has_done_{i}").isNotNull())
    if eligibility.not_done:
        done = F.col("event_name").isin(list(eligibility.not_done)) & in_lookback
        aggregates.append(F.max(F.when(done, 1)).alias("_not_done"))
        passes.append(F.col("_not_done").isNull())
    per_user = before.groupBy("snapshot_time", "user_id").agg(*aggregates)
    if passes:
        per_user = per_user.where(reduce(lambda a, b: a & b, passes))
    return per_user.select("snapshot_time", "user_id")
