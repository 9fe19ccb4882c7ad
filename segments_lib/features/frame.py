"""The one recipe from events to a segment's features: history → event profile → spec → eligibility → features.

Training (every training and calibration snapshot, then labels), the nightly score (one snapshot) and the
precision benchmark all build their rows with `eligible_features`, so the three cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from segments_lib.features.engine import build_features, event_profile
from segments_lib.features.spec import feature_columns, feature_spec_for
from segments_lib.language.definitions import Eligibility, SegmentDefinition
from segments_lib.language.eligibility import eligible_population, snapshot_frame
from segments_lib.language.snapshots import SnapshotCalendar

KEYS = ["snapshot_time", "user_id"]


@dataclass(frozen=True)
class EligibleFeatures:
    """A segment's features and eligible population at some snapshots, from the history before `as_of`."""
    features: DataFrame  # snapshot_time, user_id, then `columns`: every user with an event before T
    population: DataFrame  # snapshot_time, user_id: who is eligible at each snapshot
    columns: list[str]  # the feature columns of the spec, in order

    def rows(self, keyed: DataFrame | None = None) -> DataFrame:
        """`keyed` (default: the population; or labels built on it) with its users' features, inner-joined.

        Eligible users all have an event before T, so each has a feature row: the join is inner and
        never invents "never" values for counts.
        """
        return (self.population if keyed is None else keyed).join(self.features, on=KEYS, how="inner")


def eligible_features(events: DataFrame, segment: SegmentDefinition, snapshot_times: Sequence[datetime],
                      as_of: datetime) -> EligibleFeatures:
    """Features of `segment` at `snapshot_times`, built only from events before `as_of` (≥ every snapshot)
    and within the segment's `history` before each snapshot.

    The event profile (which event types and valued events the spec covers) is read from that same
    history, so a later event never shapes the columns. One `build_features` call covers all snapshots.
    """
    history = events.where(F.col("event_time") < F.lit(as_of))
    event_counts, valued_events = event_profile(history)
    # Bounded look-back: the features at T never depend on events before T − history, so a night that
    # reads only the window its snapshots need builds the same features as one given every event.
    spec = feature_spec_for(segment, event_counts, valued_events, history=segment.history)
    snapshots = snapshot_frame(events.sparkSession, list(snapshot_times))
    return EligibleFeatures(
        features=build_features(history, snapshots, spec),
        population=eligible_population(history, snapshots, bounded_eligibility(segment)),
        columns=feature_columns(spec),
    )


def bounded_eligibility(segment: SegmentDefinition) -> Eligibility:
    """The segment's eligibility with has_done / not_done looking back at most its `history` when no
    `lookback` is set: "ever before T" would make eligibility depend on events no night reads."""
    if segment.eligible.lookback is not None:
        return segment.eligible
    return replace(segment.eligible, lookback=segment.history)


def at_snapshot(time: datetime) -> Column:
    """The rows of one snapshot in a frame keyed by (snapshot_time, user_id)."""
    return F.col("snapshot_time") == F.lit(time)


def is_holdout(calendar: SnapshotCalendar) -> Column:
    """The holdout rows of a training frame: the calendar's calibration snapshot."""
    return at_snapshot(calendar.calibration)
