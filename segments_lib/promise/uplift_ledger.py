"""The uplift ledger: realised versus promised uplift of an uplift segment's closed membership.

An uplift segment ranks users by predicted uplift P(target | treated) − P(target | not treated), and its
levels are top shares of that ranking. Promised precision means nothing there: what a level promises is
that treating its members gains conversions. On night D the ledger takes the membership of run date
S = `backtest_scored_date(D, horizon)` (its outcome window is closed) and, per level, compares the outcome
rate of the members exposed to a treatment event in [S, S + treatment.window) with that of the members who
were not. The exposure is randomized by the sender, so that difference is the level's realised uplift;
Newcombe's 95 % interval (`uplift_metrics.difference_interval`) says how far a night of that size can be
trusted. A level row `all` (every scored user) gives the average effect to compare the levels with: a
ranking that works shows levels above it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DataType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from segments_lib.job.scoring import membership_slice
from segments_lib.language.definitions import SegmentDefinition
from segments_lib.language.treatment import treatment_flags
from segments_lib.model.uplift_metrics import difference_interval
from segments_lib.promise.ledger import backtest_scored_date, default_level_columns, labels_for_membership

__all__ = [
    "ALL_LEVEL",
    "PROMISE_KEYS",
    "UPLIFT_LEDGER_COLUMNS",
    "UPLIFT_LEDGER_SCHEMA",
    "UpliftPromise",
    "promises_from_json",
    "uplift_night_ledger",
]

# The level row of every scored user of the night: the average effect, what targeting at random would get.
ALL_LEVEL = "all"
# The keys of a level's entry in the thresholds.json an uplift training run logs (others are ignored).
PROMISE_KEYS = ("share", "threshold", "uplift", "uplift_lower")

# Stable, documented columns of the uplift ledger, one row per (evaluated_on, segment, level).
UPLIFT_LEDGER_COLUMNS: tuple[tuple[str, DataType, str], ...] = (
    ("evaluated_on", DateType(), "Night the evaluation ran; the outcome window closed before this date."),
    ("scored_date", DateType(), "Run date of the membership being evaluated (its snapshot is this date 00:00 UTC)."),
    ("segment", StringType(), "Segment name from conf/segments.yaml."),
    ("level", StringType(), f"Level whose members are evaluated; '{ALL_LEVEL}' is every scored user of the night."),
    ("model_version", IntegerType(), "MLflow model version that scored the membership."),
    ("members", LongType(), "Members at this level with a known outcome (treated and not)."),
    ("treated_members", LongType(), "Members exposed to a treatment event in [scored_date, + treatment window)."),
    ("treated_conversions", LongType(), "Treated members whose target happened in the outcome window."),
    ("control_members", LongType(), "Members not exposed in the treatment window."),
    ("control_conversions", LongType(), "Control members whose target happened in the outcome window."),
    ("treated_rate", DoubleType(), "treated_conversions / treated_members; null without treated members."),
    ("control_rate", DoubleType(), "control_conversions / control_members; null without control members."),
    ("realised_uplift", DoubleType(), "treated_rate − control_rate; null when either arm is empty."),
    ("uplift_lower", DoubleType(), "Lower end of Newcombe's 95 % interval on realised_uplift; null with an empty arm."),
    ("uplift_upper", DoubleType(), "Upper end of Newcombe's 95 % interval on realised_uplift; null with an empty arm."),
    ("incremental_conversions", DoubleType(), "realised_uplift × members: conversions the level's members would "
     "gain if all were treated rather than none."),
    ("promised_uplift", DoubleType(), "Held-out treated-minus-control rate above the level's threshold at training; "
     f"null for '{ALL_LEVEL}' and for a level without a promise."),
    ("promised_lower", DoubleType(), "95 % lower bound of promised_uplift; null when nothing was promised."),
    ("meets_lower_bound", BooleanType(), "realised_uplift >= promised_lower; null when either is null."),
)

UPLIFT_LEDGER_SCHEMA = StructType([
    StructField(name, dtype, nullable=True, metadata={"comment": doc}) for name, dtype, doc in UPLIFT_LEDGER_COLUMNS
])

# The counts the one aggregation computes per level, in the order the ledger row shows them.
_COUNTS = ("members", "treated_members", "treated_conversions", "control_members", "control_conversions")


@dataclass(frozen=True)
class UpliftPromise:
    """What training promised for a level, measured on held-out randomized data.

    `share` is the top share of users the level targets; `uplift` the held-out treated-minus-control
    outcome rate of the users above `threshold` and `uplift_lower` its 95 % lower bound. None: nothing
    to promise (an unreachable threshold, or an arm left empty on the holdout).
    """

    share: float
    threshold: float | None = None
    uplift: float | None = None
    uplift_lower: float | None = None


def _number(level: str, key: str, value: object, required: bool) -> float | None:
    """A promise value as a float; a bool or a string is a broken file, not a number to coerce."""
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"uplift promise of level {level!r}: {key!r} must be a number, found {value!r}")
    return float(value)


def promises_from_json(choices: Mapping[str, Mapping[str, object]]) -> dict[str, UpliftPromise]:
    """Level promises from the `thresholds.json` an uplift training run logs ({level: {share, threshold, …}}).

    Every key of `PROMISE_KEYS` must be present (null allowed except for `share`): a file without them is
    from another kind of training, and reading it as "nothing promised" would hide that.
    """
    promises: dict[str, UpliftPromise] = {}
    for level, choice in choices.items():
        if not isinstance(choice, Mapping):
            raise ValueError(f"uplift promise of level {level!r} must be a mapping with keys {list(PROMISE_KEYS)}, "
                             f"found {choice!r}")
        for key in PROMISE_KEYS:
            if key not in choice:
                raise ValueError(f"uplift promise of level {level!r} lacks {key!r}: {dict(choice)}")
        share = _number(level, "share", choice["share"], required=True)
        if share is None or not 0.0 < share <= 1.0:
            raise ValueError(f"uplift promise of level {level!r}: 'share' must be in (0, 1], found {share}")
        threshold, uplift, lower = (_number(level, key, choice[key], required=False) for key in PROMISE_KEYS[1:])
        promises[level] = UpliftPromise(share, threshold, uplift, lower)
    return promises


def _checked_level_columns(membership: DataFrame, segment: SegmentDefinition, promises: Mapping[str, UpliftPromise],
                           level_columns: Mapping[str, str] | None) -> dict[str, str]:
    """Level → membership flag column, after checking that every promise has a column and every column exists."""
    columns = dict(level_columns) if level_columns else default_level_columns(list(promises), segment.level_name())
    if ALL_LEVEL in columns:
        raise ValueError(f"level name {ALL_LEVEL!r} is reserved for every scored user; columns: {columns}")
    unknown = [level for level in promises if level not in columns]
    if unknown:
        raise ValueError(f"promises name level(s) {unknown} without a membership column; columns: {columns}")
    needed = ["segment", "run_date", "user_id", "model_version", *columns.values()]
    missing = [c for c in dict.fromkeys(needed) if c not in membership.columns]
    if missing:
        raise ValueError(f"membership: missing column(s) {missing}; found {membership.columns}")
    return columns


def _level_counts(index: int, member: Column) -> list[Column]:
    """The `_COUNTS` of one level (index `index`), among rows with a known label; `member` says who belongs."""
    known = member & F.col("label").isNotNull()
    treated = F.col("treated") == 1
    converted = F.col("label") == 1
    return [
        F.count_if(known).alias(f"members_{index}"),
        F.count_if(known & treated).alias(f"treated_members_{index}"),
        F.count_if(known & treated & converted).alias(f"treated_conversions_{index}"),
        F.count_if(known & ~treated).alias(f"control_members_{index}"),
        F.count_if(known & ~treated & converted).alias(f"control_conversions_{index}"),
    ]


def _rate(conversions: int, members: int) -> float | None:
    return conversions / members if members > 0 else None


def _ledger_row(counts: Mapping[str, int], promise: UpliftPromise | None) -> dict[str, Any]:
    """The derived values of one level from its counts: rates, realised uplift, interval and verdict."""
    treated_rate = _rate(counts["treated_conversions"], counts["treated_members"])
    control_rate = _rate(counts["control_conversions"], counts["control_members"])
    uplift = lower = upper = incremental = None
    if treated_rate is not None and control_rate is not None:
        uplift = treated_rate - control_rate
        lower, upper = difference_interval(counts["treated_conversions"], counts["treated_members"],
                                           counts["control_conversions"], counts["control_members"])
        incremental = uplift * counts["members"]
    promised = None if promise is None else promise.uplift
    promised_lower = None if promise is None else promise.uplift_lower
    # Null (not False) when there is nothing to judge: an empty arm, or a level that promised no bound.
    meets = None if uplift is None or promised_lower is None else uplift >= promised_lower
    return {
        **counts, "treated_rate": treated_rate, "control_rate": control_rate, "realised_uplift": uplift,
        "uplift_lower": lower, "uplift_upper": upper, "incremental_conversions": incremental,
        "promised_uplift": promised, "promised_lower": promised_lower, "meets_lower_bound": meets,
    }


def uplift_night_ledger(events: DataFrame, membership: DataFrame, segment: SegmentDefinition,
                        promises: Mapping[str, UpliftPromise], evaluated_on: date,
                        level_columns: Mapping[str, str] | None = None) -> DataFrame:
    """The uplift ledger rows night `evaluated_on` writes for one uplift segment, in `UPLIFT_LEDGER_SCHEMA`.

    `membership` may hold any run dates and segments: only this segment's slice of S =
    `backtest_scored_date(evaluated_on, segment.horizon)` is evaluated, with labels and treatment flags
    built for exactly its users at snapshot S 00:00 UTC. One row per level of `level_columns` (default:
    `default_level_columns`, the segment's own level reading `is_member`), then the `all` row. Empty when
    S was not scored.

    The arms are the exposure, not the membership's `control_group`: the sender randomizes who is sent,
    and a control-group user the job asked not to target is simply one more unexposed user.
    """
    treatment = segment.treatment
    if treatment is None:
        raise ValueError(f"segment {segment.name!r} has no treatment: the uplift ledger needs one (kind: uplift)")
    columns = _checked_level_columns(membership, segment, promises, level_columns)
    scored_date = backtest_scored_date(evaluated_on, segment.horizon)
    closed = membership.where(membership_slice(segment.name, scored_date))
    labels = labels_for_membership(events, closed, segment.target, segment.prediction_window)
    # The population labels_for_membership labels: run_date as a timestamp is midnight UTC (session time zone).
    population = closed.select(F.col("run_date").cast("timestamp").alias("snapshot_time"), "user_id")
    flags = treatment_flags(events, population, treatment.events, treatment.window).select("user_id", "treated")
    joined = (closed.select("user_id", "model_version", *dict.fromkeys(columns.values()))
              .join(labels, on="user_id", how="left").join(flags, on="user_id", how="left"))

    levels = [*columns, ALL_LEVEL]
    members = [F.coalesce(F.col(columns[level]), F.lit(False)) for level in columns] + [F.lit(True)]
    aggregates = [F.count(F.lit(1)).alias("rows"), F.first("model_version", ignorenulls=True).alias("model_version")]
    for index, member in enumerate(members):
        aggregates += _level_counts(index, member)
    # One global aggregation: a single row of a handful of counts, all the driver needs for the intervals.
    (totals,) = joined.agg(*aggregates).collect()
    spark = membership.sparkSession
    if totals["rows"] == 0:
        return spark.createDataFrame([], UPLIFT_LEDGER_SCHEMA)

    model_version = None if totals["model_version"] is None else int(totals["model_version"])
    rows = []
    for index, level in enumerate(levels):
        counts = {name: int(totals[f"{name}_{index}"]) for name in _COUNTS}
        values = {"evaluated_on": evaluated_on, "scored_date": scored_date, "segment": segment.name, "level": level,
                  "model_version": model_version,
                  **_ledger_row(counts, None if level == ALL_LEVEL else promises.get(level))}
        rows.append(tuple(values[name] for name, _, _ in UPLIFT_LEDGER_COLUMNS))
    return spark.createDataFrame(rows, UPLIFT_LEDGER_SCHEMA)
