"""The naive feature pass, kept ONLY as the benchmark's comparison: one aggregate and one join per
event type × window (and per family), which is the anti-pattern the engine avoids.

It computes the same features as `segments_lib.features.engine.build_features` for one snapshot, so the
benchmark compares like with like.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from segments_lib.features import spec as naming  # the feature column names
from segments_lib.features.spec import FeatureSpec, feature_columns

_DAY_S, _HOUR_S = 86_400.0, 3_600.0


def _seconds_before(snapshot: datetime) -> F.Column:
    return F.lit(snapshot).cast("timestamp").cast("double") - F.col("event_time").cast("double")


def naive_features(events: DataFrame, snapshot: datetime, spec: FeatureSpec) -> DataFrame:
    before = events.where(F.col("event_time") < F.lit(snapshot)).withColumn("age_s", _seconds_before(snapshot))
    p1 = spec.past_window.total_seconds()
    in_p1 = before.where(F.col("age_s") <= p1)
    out = before.groupBy("user_id").agg((F.max("age_s") / _DAY_S).alias("tenure_days"))
    overall = in_p1.groupBy("user_id").agg(
        F.countDistinct(F.ceil(F.col("age_s") / _DAY_S)).alias(f"active_days_{spec.p1}"),
        F.countDistinct(F.when(F.col("event_name").isin(list(spec.event_names)), F.col("event_name"))).alias(
            f"distinct_events_{spec.p1}"
        ),
        F.count(F.when(F.col("age_s") <= timedelta(days=7).total_seconds(), 1)).alias("_n7"),
        F.count(F.lit(1)).alias("_np1"),
    )
    out = out.join(overall, "user_id", how="left")
    rest_days = p1 / _DAY_S - 7
    trend = ((F.col("_n7") / 7) - (F.col("_np1") - F.col("_n7")) / rest_days) / (
        (F.col("_n7") / 7) + (F.col("_np1") - F.col("_n7")) / rest_days
    )
    out = out.withColumn("trend_7d_vs_rest", trend)
    for event in spec.event_names:
        of_event = before.where(F.col("event_name") == event)
        for window in spec.windows:
            counted = of_event.where(F.col("age_s") <= window.total_seconds()).groupBy("user_id").count()
            out = out.join(counted.withColumnRenamed("count", naming.freq_name(window, event)), "user_id", how="left")
        recency = of_event.groupBy("user_id").agg((F.min("age_s") / _DAY_S).alias(naming.recency_name(event)))
        out = out.join(recency, "user_id", how="left")
        ordered = Window.partitionBy("user_id").orderBy("event_time").rowsBetween(-1, -1)
        gaps = (
            of_event.where(F.col("age_s") <= p1)
            .withColumn("gap_h", (F.col("event_time").cast("double") - F.lag("event_time").over(ordered).cast("double"))
                        / _HOUR_S)
            .groupBy("user_id")
            .agg(
                F.avg("gap_h").alias(naming.gap_name("mean", event)),
                F.min("gap_h").alias(naming.gap_name("min", event)),
                F.max("gap_h").alias(naming.gap_name("max", event)),
                F.stddev_pop("gap_h").alias(naming.gap_name("std", event)),
                F.max_by("gap_h", "event_time").alias(naming.gap_name("last", event)),
            )
        )
        out = out.join(gaps, "user_id", how="left")
    for event in spec.value_events:
        values = in_p1.where(F.col("event_name") == event).groupBy("user_id").agg(
            F.sum("event_value").alias(naming.value_name("sum", spec, event)),
            F.avg("event_value").alias(naming.value_name("mean", spec, event)),
            F.max("event_value").alias(naming.value_name("max", spec, event)),
        )
        out = out.join(values, "user_id", how="left")
    for pair in spec.duration_pairs:
        firsts = in_p1.where(F.col("event_name") == pair.first).select(
            "user_id", F.col("event_time").alias("a_time"), F.monotonically_increasing_id().alias("a_id")
        )
        thens = before.where(F.col("event_name") == pair.then).select(
            F.col("user_id").alias("b_user"), F.col("event_time").alias("b_time")
        )
        next_then = (
            firsts.join(thens, (F.col("user_id") == F.col("b_user")) & (F.col("b_time") >= F.col("a_time")), how="left")
            .groupBy("user_id", "a_id", "a_time")
            .agg(((F.min("b_time").cast("double") - F.col("a_time").cast("double")) / _HOUR_S).alias("wait_h"))
        )
        stats = next_then.groupBy("user_id").agg(
            F.avg("wait_h").alias(naming.pair_mean_name(pair)),
            F.count(F.when(F.col("wait_h").isNull() | (F.col("wait_h") > pair.within.total_seconds() / _HOUR_S), 1))
            .alias(naming.pair_unfollowed_name(pair)),
        )
        out = out.join(stats, "user_id", how="left")
    zero_when_missing = [c for c in feature_columns(spec) if c.startswith(("freq_", "value_sum", "pair_unfollowed",
                                                                           "active_days", "distinct_events"))]
    return out.fillna(0, subset=zero_when_missing).select(
        F.lit(snapshot).cast("timestamp").alias("snapshot_time"), "user_id",
        *[F.col(c).cast("double").alias(c) for c in feature_columns(spec)],
    )
