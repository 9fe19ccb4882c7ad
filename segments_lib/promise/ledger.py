"""The promise ledger: realized versus promised precision of a closed membership, and when to act on it.

On night D the ledger evaluates the membership of run date S = D − ceil(horizon) (`backtest_scored_date`):
the newest run date whose outcome window [S, S + horizon) has closed before D 00:00 UTC. `backtest_rows`
turns that membership and its labels into one ledger row per precision level with a single aggregation;
`consecutive_misses` / `precision_flag` read the ledger back to find segments that keep missing their
promise, and `retrain_triggers` says why a `--retrain auto` night should retrain.

Drift (PSI) lives in `monitoring_drift`, night-to-night churn in `monitoring_stability`; both are
re-exported here so the nightly job imports monitoring from one place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from statistics import NormalDist

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DateType, DoubleType, LongType, StringType, StructField, StructType

from segments_lib.job.scoring import membership_slice
from segments_lib.language.definitions import NAMED_LEVELS, SegmentDefinition, Target
from segments_lib.language.targets import build_labels
from segments_lib.promise.drift import feature_psi, psi, top_drifting
from segments_lib.promise.stability import ChurnStats, membership_churn

__all__ = [
    "BACKTEST_COLUMNS",
    "BACKTEST_SCHEMA",
    "ChurnStats",
    "LevelPromise",
    "backtest_rows",
    "backtest_scored_date",
    "consecutive_misses",
    "default_level_columns",
    "feature_psi",
    "labels_for_membership",
    "membership_churn",
    "night_ledger",
    "precision_flag",
    "prediction_lower_bound",
    "promise_kept_share",
    "promises_from_choices",
    "psi",
    "retrain_triggers",
    "top_drifting",
]

# Stable, documented columns of `segment_backtest`: the evidence a reader checks a promise against.
BACKTEST_COLUMNS: tuple[tuple[str, object, str], ...] = (
    ("segment", StringType(), "Segment name from conf/segments.yaml."),
    ("scored_date", DateType(), "Run date of the membership being evaluated (its snapshot is this date 00:00 UTC)."),
    ("evaluated_on", DateType(), "Night the evaluation ran; the outcome window closed before this date."),
    ("level", StringType(), "Precision level whose members are evaluated."),
    ("promised_precision", DoubleType(), "Precision the level targets (config precision_levels)."),
    ("promised_lower_bound", DoubleType(), "Lower prediction bound (nightly.confidence) on the realized precision "
     "of this many members, from the out-of-fold holdout precision at the threshold; null when unreachable."),
    ("members", LongType(), "Members at this level (treated and control) with a known outcome."),
    ("true_positives", LongType(), "Members whose target happened in the outcome window."),
    ("realized_precision", DoubleType(), "true_positives / members; null when there are no members."),
    ("realized_recall", DoubleType(), "true_positives / positives among eligible users; null when none."),
    ("eligible", LongType(), "Scored eligible users with a known outcome."),
    ("positives", LongType(), "Eligible users whose target happened."),
    ("base_rate", DoubleType(), "positives / eligible: the precision of targeting everyone."),
    ("treated_members", LongType(), "Members outside the control group."),
    ("treated_outcome_rate", DoubleType(), "Outcome rate of treated members; null when there are none."),
    ("control_members", LongType(), "Members in the random control group (not targeted)."),
    ("control_outcome_rate", DoubleType(), "Outcome rate of control members; null when there are none."),
    ("unlabeled", LongType(), "Scored users without a label row; excluded from every count above."),
    ("meets_lower_bound", BooleanType(), "realized_precision >= promised_lower_bound; null without members or bound."),
)

BACKTEST_SCHEMA = StructType([StructField(n, t, nullable=True) for n, t, _ in BACKTEST_COLUMNS])


@dataclass(frozen=True)
class LevelPromise:
    """What a level promised on the holdout (None bound: unreachable, nothing promised).

    With evidence (`evidence_members` > 0: members and true positives at the threshold, counted out of
    fold on the holdout, see `calibration.with_evidence`), a night's promised lower bound is the
    one-sided `confidence` *prediction* bound on the precision of that night's members
    (`prediction_lower_bound`): it covers the noise of the holdout and of a night of that size. Without
    evidence it is the fixed `lower_bound`.
    """

    promised_precision: float
    lower_bound: float | None
    evidence_members: int = 0
    evidence_true_positives: int = 0
    confidence: float = 0.95


def prediction_lower_bound(evidence_tp: int, evidence_n: int, members: Column, confidence: float) -> Column:
    """Lower `confidence` prediction bound on the precision of `members` new members (normal approximation).

    p = (tp + ½) / (n + 1) (the Jeffreys-adjusted holdout precision; never exactly 0 or 1), and the variance
    of a new night's realized precision around it is p(1 − p)(1/n + 1/m): the holdout's own uncertainty
    plus the binomial noise of m members. Null without members.
    """
    z = NormalDist().inv_cdf(confidence)
    p = (evidence_tp + 0.5) / (evidence_n + 1.0)
    spread = F.sqrt(F.lit(p * (1.0 - p)) * (F.lit(1.0 / evidence_n) + F.lit(1.0) / members))
    return F.when(members > 0, F.greatest(F.lit(p) - F.lit(z) * spread, F.lit(0.0)))


def backtest_scored_date(evaluated_on: date, horizon: timedelta) -> date:
    """The newest run date S whose outcome window [S, S + horizon) is closed on night `evaluated_on`.

    The horizon is rounded up to whole days: a 7d + 12h sequence horizon evaluates S = D − 8, because
    S = D − 7 would still be open until D 12:00.
    """
    if horizon <= timedelta(0):
        raise ValueError(f"horizon must be positive, found {horizon}")
    return evaluated_on - timedelta(days=math.ceil(horizon / timedelta(days=1)))


def labels_for_membership(events: DataFrame, membership: DataFrame, target: Target,
                          prediction_window: timedelta) -> DataFrame:
    """`user_id`, `label` for exactly the users of one night's membership (its run_date is the snapshot).

    Building labels for the membership population itself is what makes the ledger exact: a churn
    target labels a user without events as 1, so defaulting missing labels to 0 would be wrong.
    """
    _require(membership, ["run_date", "user_id"], "membership")
    # The session time zone is UTC (base.yaml), so the date cast is midnight UTC, like scoring snapshots.
    population = membership.select(F.col("run_date").cast("timestamp").alias("snapshot_time"), "user_id")
    labels = build_labels(events, population, target, prediction_window)
    return labels.select("user_id", "label")


def _evidence(choice: Mapping[str, object]) -> tuple[int, int]:
    """(members, true positives) behind a level's promise: the held-out evidence counts, or without them (a
    model trained before they were recorded) the counts of the rows that chose the threshold, which are
    somewhat optimistic."""
    members = int(choice.get("promise_members") or 0)  # type: ignore[call-overload]
    if members > 0:
        return members, int(choice.get("promise_true_positives") or 0)  # type: ignore[call-overload]
    holdout = int(choice.get("holdout_members") or 0)  # type: ignore[call-overload]
    precision = choice.get("expected_precision")
    if holdout > 0 and precision is not None:
        return holdout, round(float(precision) * holdout)  # type: ignore[arg-type]
    return 0, 0


def promises_from_choices(choices: Mapping[str, Mapping[str, object]], confidence: float = 0.95,
                          ) -> dict[str, LevelPromise]:
    """Level promises from the `thresholds.json` a training run logs ({level: ThresholdChoice fields}).

    The bound and its evidence are kept only for a level that has a threshold: an unreachable level
    promised nothing.
    """
    promises: dict[str, LevelPromise] = {}
    for level, choice in choices.items():
        if "target_precision" not in choice:
            raise ValueError(f"threshold choice of level {level!r} lacks 'target_precision': {dict(choice)}")
        reachable = choice.get("threshold") is not None
        bound = choice.get("precision_lower") if reachable else None
        members, true_positives = _evidence(choice) if reachable else (0, 0)
        promises[level] = LevelPromise(float(choice["target_precision"]),  # type: ignore[arg-type]
                                       None if bound is None else float(bound),  # type: ignore[arg-type]
                                       members, true_positives, confidence)
    return promises


def _promised_bound(promise: LevelPromise, members: Column) -> Column:
    if promise.lower_bound is None:
        return F.lit(None).cast("double")
    if promise.evidence_members > 0:
        return prediction_lower_bound(promise.evidence_true_positives, promise.evidence_members, members,
                                      promise.confidence)
    return F.lit(promise.lower_bound).cast("double")


def default_level_columns(levels: Sequence[str], segment_level: str) -> dict[str, str]:
    """Level → membership flag column: `member_<level>` for the standard levels, `is_member` for the own level.

    A segment with a custom precision (e.g. 0.65 → level 'p65') only has its own flag, `is_member`.
    """
    columns = {level: f"member_{level}" for level in levels if level in NAMED_LEVELS}
    columns[segment_level] = columns.get(segment_level, "is_member")
    return columns


def _require(df: DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; found {df.columns}")


def _ratio(numerator: Column, denominator: Column) -> Column:
    return F.when(denominator > 0, numerator.cast("double") / denominator)


def backtest_rows(
    membership: DataFrame,
    labels: DataFrame,
    promises: Mapping[str, LevelPromise],
    scored_date: date,
    evaluated_on: date,
    level_columns: Mapping[str, str] | None = None,
) -> DataFrame:
    """One `segment_backtest` row per level for one segment's membership of `scored_date`.

    `membership` is that night's rows for one segment (members and non-members, as scoring wrote
    them); `labels` has `user_id`, `label` (0/1), ideally for exactly those users
    (`labels_for_membership`). A scored user without a label row is *not* assumed negative: it is
    counted in `unlabeled` and left out of every other count. Precision counts all members, treated
    and control alike, because the promise is about who the score selects; the two outcome rates
    beside it show whether targeting changed the outcome. The arms are the membership's own
    `control_group`, which is stable per (segment, user) for a rotation period or a named experiment
    (`scoring.control_draw`), so a control user was not targeted by the nights around `scored_date`.
    """
    columns = _checked_level_columns(membership, labels, promises, level_columns)
    joined = membership.join(labels.select("user_id", F.col("label").cast("int").alias("label")),
                             on="user_id", how="left")
    totals = joined.agg(*_backtest_counts(promises, columns))
    exploded = totals.select("segment", "eligible", "positives", "unlabeled", _per_level(promises))
    result = _backtest_columns(scored_date, evaluated_on)
    return exploded.select(*[
        result[name].cast(dtype).alias(name, metadata={"comment": doc}) for name, dtype, doc in BACKTEST_COLUMNS
    ])


def _checked_level_columns(membership: DataFrame, labels: DataFrame, promises: Mapping[str, LevelPromise],
                           level_columns: Mapping[str, str] | None) -> dict[str, str]:
    """Level → membership flag column, after checking that every promised level and input column is there."""
    columns = dict(level_columns) if level_columns is not None else {lv: f"member_{lv}" for lv in promises}
    unknown = [lv for lv in promises if lv not in columns]
    if unknown:
        raise ValueError(f"promises name level(s) {unknown} without a membership column; columns: {columns}")
    _require(membership, ["segment", "user_id", "control_group", *(columns[lv] for lv in promises)], "membership")
    _require(labels, ["user_id", "label"], "labels")
    if not promises:
        raise ValueError("backtest_rows needs at least one level promise")
    return columns


def _backtest_counts(promises: Mapping[str, LevelPromise], columns: Mapping[str, str]) -> list[Column]:
    """The one aggregation's columns: the segment's counts, then per level i its labelled members and their
    positives (m, tp), the treated ones (tm, tp_t) and the control ones (cm, tp_c)."""
    known = F.col("label").isNotNull()
    positive = F.col("label") == 1
    control = F.coalesce(F.col("control_group"), F.lit(False))
    aggregates: list[Column] = [
        F.first("segment", ignorenulls=True).alias("segment"),
        F.count_if(known).alias("eligible"),
        F.count_if(positive).alias("positives"),
        F.count_if(~known).alias("unlabeled"),
    ]
    for i, level in enumerate(promises):
        member = known & F.coalesce(F.col(columns[level]), F.lit(False))
        aggregates += [
            F.count_if(member).alias(f"m{i}"),
            F.count_if(member & positive).alias(f"tp{i}"),
            F.count_if(member & ~control).alias(f"tm{i}"),
            F.count_if(member & ~control & positive).alias(f"tp_t{i}"),
            F.count_if(member & control).alias(f"cm{i}"),
            F.count_if(member & control & positive).alias(f"tp_c{i}"),
        ]
    return aggregates


def _per_level(promises: Mapping[str, LevelPromise]) -> Column:
    """`l`: one struct per level (its promise and the counts `_backtest_counts` named for it), exploded to rows."""
    return F.explode(F.array(*[
        F.struct(
            F.lit(level).alias("level"),
            F.lit(promise.promised_precision).cast("double").alias("promised_precision"),
            _promised_bound(promise, F.col(f"m{i}")).alias("promised_lower_bound"),
            F.col(f"m{i}").alias("members"), F.col(f"tp{i}").alias("true_positives"),
            F.col(f"tm{i}").alias("treated_members"), F.col(f"tp_t{i}").alias("treated_positives"),
            F.col(f"cm{i}").alias("control_members"), F.col(f"tp_c{i}").alias("control_positives"),
        )
        for i, (level, promise) in enumerate(promises.items())
    ])).alias("l")


def _backtest_columns(scored_date: date, evaluated_on: date) -> dict[str, Column]:
    """Each `BACKTEST_COLUMNS` column as an expression over the exploded per-level rows."""
    realized = _ratio(F.col("l.true_positives"), F.col("l.members"))
    return {
        "segment": F.col("segment"),
        "scored_date": F.lit(scored_date),
        "evaluated_on": F.lit(evaluated_on),
        "level": F.col("l.level"),
        "promised_precision": F.col("l.promised_precision"),
        "promised_lower_bound": F.col("l.promised_lower_bound"),
        "members": F.col("l.members"),
        "true_positives": F.col("l.true_positives"),
        "realized_precision": realized,
        "realized_recall": _ratio(F.col("l.true_positives"), F.col("positives")),
        "eligible": F.col("eligible"),
        "positives": F.col("positives"),
        "base_rate": _ratio(F.col("positives"), F.col("eligible")),
        "treated_members": F.col("l.treated_members"),
        "treated_outcome_rate": _ratio(F.col("l.treated_positives"), F.col("l.treated_members")),
        "control_members": F.col("l.control_members"),
        "control_outcome_rate": _ratio(F.col("l.control_positives"), F.col("l.control_members")),
        "unlabeled": F.col("unlabeled"),
        # Null (not False) when there is nothing to judge: no members, or a level that was unreachable.
        "meets_lower_bound": F.when(F.col("l.members") > 0, realized >= F.col("l.promised_lower_bound")),
    }


def night_ledger(events: DataFrame, membership: DataFrame, segment: SegmentDefinition,
                 promises: Mapping[str, LevelPromise], evaluated_on: date,
                 level_columns: Mapping[str, str] | None = None) -> DataFrame:
    """The ledger rows night `evaluated_on` writes for one segment (a `SegmentDefinition`).

    `membership` may hold any run dates of that segment: only S = `backtest_scored_date(evaluated_on,
    segment.horizon)` is evaluated, with labels built for exactly its users. Empty when S was not scored.
    Level columns default to `default_level_columns` (the segment's own level reads `is_member`).
    """
    scored_date = backtest_scored_date(evaluated_on, segment.horizon)
    closed = membership.where(membership_slice(segment.name, scored_date))
    labels = labels_for_membership(events, closed, segment.target, segment.prediction_window)
    columns = level_columns or default_level_columns(list(promises), segment.level_name())
    rows = backtest_rows(closed, labels, promises, scored_date, evaluated_on, columns)
    # A global aggregation yields a row even without input: keep the ledger free of nights never scored.
    return rows.where(F.col("eligible") + F.col("unlabeled") > 0)


def _ledger_frame(ledger: DataFrame | pd.DataFrame, segment: str, level: str, as_of: date | None) -> pd.DataFrame:
    """The (evaluated_on, meets_lower_bound) history of one segment and level, oldest first, one row per night."""
    if isinstance(ledger, DataFrame):
        condition = (F.col("segment") == segment) & (F.col("level") == level)
        if as_of is not None:
            condition = condition & (F.col("evaluated_on") <= F.lit(as_of))
        # One small collect: a handful of rows per night for one segment and level.
        frame = ledger.where(condition).select("evaluated_on", "meets_lower_bound").toPandas()
    else:
        missing = [c for c in ("segment", "level", "evaluated_on", "meets_lower_bound") if c not in ledger.columns]
        if missing:
            raise ValueError(f"ledger: missing column(s) {missing}; found {list(ledger.columns)}")
        frame = ledger.loc[(ledger["segment"] == segment) & (ledger["level"] == level),
                           ["evaluated_on", "meets_lower_bound"]]
        if as_of is not None:
            frame = frame.loc[pd.to_datetime(frame["evaluated_on"]) <= pd.Timestamp(as_of)]
    frame = frame.assign(evaluated_on=pd.to_datetime(frame["evaluated_on"]))
    return frame.sort_values("evaluated_on").drop_duplicates("evaluated_on", keep="last")


def consecutive_misses(ledger: DataFrame | pd.DataFrame, segment: str, level: str, as_of: date | None = None) -> int:
    """Nights in a row, ending at the newest night ≤ `as_of` (None: the newest), the level missed its bound.

    A night counts as a miss when `meets_lower_bound` is False and ends the streak when it is True.
    A night with no verdict (null: no members, or an unreachable level) neither breaks nor extends
    the streak, and neither does a night with no ledger row: absence of evidence is not a good night.
    """
    streak = 0
    for verdict in reversed(_ledger_frame(ledger, segment, level, as_of)["meets_lower_bound"].tolist()):
        if verdict is None or (isinstance(verdict, float) and math.isnan(verdict)) or verdict is pd.NA:
            continue
        if bool(verdict):
            break
        streak += 1
    return streak


def precision_flag(ledger: DataFrame | pd.DataFrame, segment: str, level: str, nights: int,
                   as_of: date | None = None) -> bool:
    """True when realized precision has been below the promised lower bound `nights` nights in a row."""
    if nights < 1:
        raise ValueError(f"nights must be at least 1 (nightly.backtest_flag_nights), found {nights}")
    return consecutive_misses(ledger, segment, level, as_of) >= nights


def retrain_triggers(score_psi: float | None, psi_threshold: float, flagged: bool,
                     flag_nights: int | None = None) -> list[str]:
    """Why `--retrain auto` should retrain tonight; an empty list means it should not.

    The score PSI triggers when strictly above the threshold (nightly.score_psi_retrain); a missing
    PSI (no calibration snapshot to compare with) never does.
    """
    reasons: list[str] = []
    if score_psi is not None and not math.isnan(score_psi) and score_psi > psi_threshold:
        reasons.append(f"score PSI {score_psi:.3f} > {psi_threshold:g}")
    if flagged:
        streak = f" for {flag_nights} nights in a row" if flag_nights else ""
        reasons.append(f"realized precision below the promised lower bound{streak}")
    return reasons


def promise_kept_share(ledger: pd.DataFrame) -> pd.DataFrame:
    """Per segment and level: nights judged, nights with realized precision ≥ the promised lower bound, share.

    Only nights with a verdict count (members and a bound); `nights_without_verdict` shows the rest.
    Reads a pandas copy of `segment_backtest` (small: one row per segment, night and level).
    """
    missing = [c for c in ("segment", "level", "meets_lower_bound") if c not in ledger.columns]
    if missing:
        raise ValueError(f"ledger: missing column(s) {missing}; found {list(ledger.columns)}")
    verdict = ledger["meets_lower_bound"]
    frame = pd.DataFrame({
        "segment": ledger["segment"], "level": ledger["level"],
        "judged": verdict.notna().astype(int),
        "kept": verdict.astype("boolean").fillna(False).astype(int),
    })
    summary = frame.groupby(["segment", "level"], sort=True).agg(
        nights_judged=("judged", "sum"), nights_kept=("kept", "sum"), nights=("judged", "size")
    ).reset_index()
    summary["nights_without_verdict"] = summary["nights"] - summary["nights_judged"]
    summary["share_kept"] = summary["nights_kept"] / summary["nights_judged"].where(summary["nights_judged"] > 0)
    return summary[["segment", "level", "nights_judged", "nights_kept", "share_kept", "nights_without_verdict"]]
