"""Who was exposed at a snapshot: the `treated` flag of an uplift segment's rows.

A user is treated at snapshot T when one of the treatment events (a campaign send, say) happened in
[T, T + window): the exposure opens the prediction window, so the features (events before T) cannot
see it and the label (events from T on) measures what followed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from segments_lib.language.definitions import SegmentDefinition

KEYS = ["snapshot_time", "user_id"]


def behaviour_events(events: DataFrame, segment: SegmentDefinition) -> DataFrame:
    """The user's own actions: `events` without the segment's treatment events (all of them, for other kinds).

    A send is something done *to* the user. Counted as activity it would make every user a campaign
    reached "active" (churned ones included, since a sender cannot tell them apart), and as a feature it
    would describe the sender's schedule rather than the user. Eligibility and features read this frame;
    only the treated flag reads the sends.
    """
    if segment.treatment is None:
        return events
    return events.where(~F.col("event_name").isin(list(segment.treatment.events)))


def treatment_flags(events: DataFrame, population: DataFrame, treatment_events: Sequence[str],
                    window: timedelta) -> DataFrame:
    """`snapshot_time`, `user_id`, `treated` (0/1) for every population row, in one join and aggregation."""
    if window <= timedelta(0):
        raise ValueError(f"treatment window must be positive, found {window}")
    if not treatment_events:
        raise ValueError("an uplift segment needs at least one treatment event")
    snapshots = population.select("snapshot_time").distinct()
    in_window = (F.col("event_time") >= F.col("snapshot_time")) & (
        F.col("event_time") < F.col("snapshot_time") + F.lit(window))
    exposed = (events.where(F.col("event_name").isin(list(treatment_events))).select("user_id", "event_time")
               .join(F.broadcast(snapshots), on=in_window, how="inner")
               .groupBy(*KEYS).agg(F.lit(1).alias("treated")))
    return (population.select(*KEYS).join(exposed, on=KEYS, how="left")
            .select(*KEYS, F.coalesce(F.col("treated"), F.lit(0)).alias("treated")))
