"""Membership rows for one segment and run date: pure transforms from scored users to the BI contract."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DateType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
)

from segments_lib.language.definitions import NAMED_LEVELS
from segments_lib.model.reasons import REASON_COLUMNS

CONTROL_BUCKETS = 10_000
EPOCH = date(1970, 1, 1)  # rotation periods are counted from here, so every night agrees on them
_LEVEL_NOTES = {"high": " (smallest, most accurate)", "low": " (largest, broadest)"}

# Stable, documented columns: BI tools and campaign systems read these names.
MEMBERSHIP_COLUMNS: tuple[tuple[str, object, str], ...] = (
    ("run_date", DateType(), "Night the segment was computed for; features use events before this date (UTC)."),
    ("segment", StringType(), "Segment name from conf/segments.yaml."),
    ("user_id", StringType(), "User identifier from the events table."),
    ("score", DoubleType(), "Calibrated probability that the user meets the target in the prediction window."),
    ("precision_tier", StringType(), "Strictest precision level the user qualifies for, null if none."),
    *((f"member_{level}", BooleanType(), f"Member at the '{level}' precision level{_LEVEL_NOTES.get(level, '')}.")
      for level in NAMED_LEVELS),
    ("is_member", BooleanType(), "Member at the segment's configured precision level."),
    ("threshold", DoubleType(), "Score threshold of the segment's configured level; null when it is unreachable."),
    ("model_name", StringType(), "MLflow registered model that produced the score."),
    ("model_version", IntegerType(), "MLflow model version that produced the score."),
    ("mlflow_run_id", StringType(), "MLflow run that trained and calibrated the model."),
    ("control_group", BooleanType(), "Random hold-out (hash of segment, user and the rotation period or experiment, "
     "so a user stays in one arm for the whole period): do not target; measure uplift."),
    # Issue 21 item 5, appended last so that existing tables gain them by schema merge (docs/reasons.md).
    *((f"reason_{k}", StringType(), f"Members only: the feature pushing the score up {rank} (TreeSHAP on the GBT), "
       "in plain words; null for non-members and when fewer features push up.")
      for k, rank in ((1, "most"), (2, "second most"), (3, "third most"))),
)

MEMBERSHIP_SCHEMA = StructType([StructField(n, t, nullable=True) for n, t, _ in MEMBERSHIP_COLUMNS])


@dataclass(frozen=True)
class LevelThreshold:
    """A precision level's threshold for scoring; `threshold` is None when the level is unreachable."""
    level: str
    target_precision: float
    threshold: float | None


@dataclass(frozen=True)
class ScoringContext:
    segment: str
    run_date: date
    segment_level: str
    levels: tuple[LevelThreshold, ...]
    model_name: str
    model_version: int
    mlflow_run_id: str
    control_share: float
    # nightly.control_rotate_every / control_experiment; the defaults are base.yaml's, for callers
    # that build a context by hand (the job passes the configured values).
    control_rotate_every: timedelta = timedelta(days=90)
    control_experiment: str | None = None


def membership_slice(segment: str, run_date: date) -> Column:
    """The rows of one (segment, run date) slice of segment_membership: the unit every write replaces."""
    return (F.col("segment") == F.lit(segment)) & (F.col("run_date") == F.lit(run_date))


def control_period(run_date: date, rotate_every: timedelta) -> int:
    """The rotation period a night falls in: floor((run_date − 1970-01-01) / rotate_every).

    Plain epoch arithmetic on whole days, so the nights of one period agree on it whatever night ran
    first, and a rerun of a night gets the same period. With 90d, 2026-03-08 … 2026-06-05 are period 228.
    """
    if rotate_every < timedelta(days=1) or rotate_every % timedelta(days=1):
        raise ValueError(f"rotate_every must be a whole number of days, found {rotate_every}")
    return (run_date - EPOCH) // rotate_every


def control_draw(run_date: date, rotate_every: timedelta, experiment: str | None = None) -> str:
    """What the control hash is salted with besides (segment, user): the named experiment, else the
    rotation period (its length included, so changing `control_rotate_every` is a new draw)."""
    if experiment is not None:
        return f"experiment:{experiment}"
    return f"every:{rotate_every.days}d:period:{control_period(run_date, rotate_every)}"


def control_flag(segment: str, draw: str, user_id: Column, share: float) -> Column:
    """Deterministic hash of (segment, user, draw) → True for `share` of users.

    `draw` (`control_draw`) is the same for every night of a rotation period or of an experiment, so a
    user keeps their arm all that time, and a rerun gives the same rows; segments draw independently.
    """
    bucket = F.pmod(F.xxhash64(F.lit(segment), user_id, F.lit(draw)), F.lit(CONTROL_BUCKETS))
    return bucket < F.lit(round(share * CONTROL_BUCKETS))


def member_flag(score: Column, threshold: float | None) -> Column:
    if threshold is None:
        return F.lit(False)
    return F.coalesce(score >= F.lit(threshold), F.lit(False))


def tier_column(score: Column, levels: tuple[LevelThreshold, ...]) -> Column:
    """Strictest reachable level whose threshold the score meets, else null."""
    reachable = sorted((lv for lv in levels if lv.threshold is not None), key=lambda lv: -lv.target_precision)
    tier: Column = F.lit(None).cast(StringType())
    for lv in reversed(reachable):  # build from loosest outward so the strictest condition is checked first
        tier = F.when(score >= F.lit(lv.threshold), F.lit(lv.level)).otherwise(tier)
    return tier


def membership_rows(scored: DataFrame, ctx: ScoringContext) -> DataFrame:
    """`scored` has user_id and score (calibrated), optionally reason_1..3; returns rows in MEMBERSHIP_SCHEMA order."""
    by_level = {lv.level: lv for lv in ctx.levels}
    own = by_level[ctx.segment_level]
    score = F.col("score")
    columns = {
        "run_date": F.lit(ctx.run_date).cast(DateType()),
        "segment": F.lit(ctx.segment),
        "user_id": F.col("user_id").cast(StringType()),
        "score": score.cast(DoubleType()),
        "precision_tier": tier_column(score, ctx.levels),
        **{f"member_{level}": member_flag(score, by_level[level].threshold) if level in by_level else F.lit(None)
           for level in NAMED_LEVELS},
        "is_member": member_flag(score, own.threshold),
        "threshold": F.lit(own.threshold).cast(DoubleType()),
        "model_name": F.lit(ctx.model_name),
        "model_version": F.lit(ctx.model_version).cast(IntegerType()),
        "mlflow_run_id": F.lit(ctx.mlflow_run_id),
        "control_group": control_flag(
            ctx.segment, control_draw(ctx.run_date, ctx.control_rotate_every, ctx.control_experiment),
            F.col("user_id"), ctx.control_share),
    }
    # Reasons come with `scored` when the night computed them (model.reasons, members only); a
    # non-member never carries one, whatever `scored` holds.
    columns.update({
        name: F.when(columns["is_member"], F.col(name) if name in scored.columns else F.lit(None))
        for name in REASON_COLUMNS
    })
    # Column comments travel in the schema metadata, so Delta stores them and DESCRIBE shows them.
    return scored.select(*[
        columns[name].cast(dtype).alias(name, metadata={"comment": doc}) for name, dtype, doc in MEMBERSHIP_COLUMNS
    ])


def level_thresholds(levels: Mapping[str, float], chosen: Mapping[str, float | None]) -> tuple[LevelThreshold, ...]:
    """Pair each configured level's promise with the threshold calibrated for it (None: unreachable)."""
    return tuple(LevelThreshold(name, target, chosen.get(name)) for name, target in levels.items())
