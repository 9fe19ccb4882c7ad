"""Precision levels: calibrated probabilities, the held-out precision/size curve and one threshold per level.

The held-out calibration snapshot is split by a hash of `user_id` into two folds (see `split_folds`):
the *calibration fold* fits the isotonic map `raw_score -> score`, made strictly increasing by
interpolating between its steps and a tiny raw-score tie-break (`interpolated_isotonic`), so the score
keeps every distinction the model's ranking makes; the *threshold fold* is scored with
that map and is the only evidence for the curve, the thresholds and their promise. A second hash splits
the threshold fold (`split_threshold_fold`): the *choice half* picks each level's threshold and its
Clopper–Pearson bound, the *evidence half* counts members and true positives at that same threshold
(`with_evidence`). So the promise is measured on users that neither fitted the calibrator nor chose the
threshold, with exactly the scoring function production uses. docs/precision-levels.md explains why.

Everything proportional to rows runs in Spark; the driver only sees one row per distinct score.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from pyspark.ml.feature import SQLTransformer
from pyspark.ml.regression import IsotonicRegression, IsotonicRegressionModel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from scipy.stats import beta

STATUS_OK = "ok"
STATUS_UNREACHABLE = "precision_unreachable"
CALIBRATION_FOLD = 0
THRESHOLD_FOLD = 1
RELIABILITY_BINS = 10
CURVE_COLUMNS = ["threshold", "members", "true_positives", "precision", "precision_lower", "recall"]
# Weight of the raw score in `score = (1 − ε) · interpolated isotonic + ε · raw`. Where the interpolation
# is flat (below the first and above the last isotonic block) users would tie; ε · raw orders them as
# the model does. 1e-6 moves a probability by at most 1e-6 and still resolves raw scores 1e-9 apart
# (a double near 0.05 resolves 1e-17).
TIE_BREAK = 1e-6


@dataclass(frozen=True)
class ThresholdChoice:
    """The operating point of one precision level, chosen on the choice half of the threshold fold.

    For an unreachable level `threshold`, `expected_precision`, `precision_lower` and `expected_recall`
    are None and `holdout_members` is 0: the level has no members. `best_precision` and
    `best_precision_members` always describe the most precise set of at least the minimum size
    (or of any size when none is that large), so a reader sees how far the level is from reach.
    """

    level: str
    target_precision: float
    status: str
    threshold: float | None
    expected_precision: float | None
    precision_lower: float | None
    expected_recall: float | None
    holdout_members: int
    best_precision: float
    best_precision_members: int
    reason: str = ""
    # The evidence half's counts at `threshold` (`with_evidence`); 0 when not measured or unreachable.
    promise_members: int = 0
    promise_true_positives: int = 0


@dataclass(frozen=True)
class CalibrationResult:
    """A fitted `raw_score -> score` map and the evidence needed to judge and log it.

    `calibrator` is a Spark Transformer (a `SQLTransformer`: reads `raw_score`, adds `score`, strictly
    increasing in `raw_score`; any Spark can load it, no Python class needed); append it to the model's
    PipelineModel stages so the logged model emits calibrated probabilities. `threshold_fold` is the
    held-out half the calibrator never saw, already scored: pass it to `threshold_curve` and
    `choose_thresholds`. Brier scores are measured on that fold. `reliability` has one row per
    (kind, bin) with kind in {"raw", "calibrated"}: `bin`, `mean_predicted`, `observed_rate`, `rows`.
    """

    calibrator: SQLTransformer
    threshold_fold: DataFrame
    brier_before: float
    brier_after: float
    calibration_rows: int
    threshold_rows: int
    reliability: pd.DataFrame
    isotonic: IsotonicRegressionModel  # the step function the calibrator interpolates (its knots' source)
    knots: tuple[tuple[float, float], ...]  # (raw score, probability) block centres, strictly increasing


def _require_columns(df: DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; found {df.columns}")


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), found {confidence}")


def precision_lower_bounds(true_positives: np.ndarray, members: np.ndarray, confidence: float = 0.95) -> np.ndarray:
    """Vectorised one-sided Clopper–Pearson lower bounds; 0 where there are no true positives or no members."""
    _check_confidence(confidence)
    tp = np.asarray(true_positives, dtype=float)
    n = np.asarray(members, dtype=float)
    if np.any(tp < 0) or np.any(tp > n):
        raise ValueError("true positives must satisfy 0 <= tp <= members")
    has_hits = tp > 0
    # Beta(tp, n - tp + 1) at 1 - confidence; the guard keeps scipy away from a zero shape parameter.
    bounds = beta.ppf(1.0 - confidence, np.where(has_hits, tp, 1.0), np.where(has_hits, n - tp + 1.0, 1.0))
    return np.where(has_hits, bounds, 0.0)


def precision_lower_bound(tp: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper–Pearson lower bound on precision tp / n at the given confidence.

    Exact (never anti-conservative, unlike Wilson near 0/1 or at small n), which suits a promise.
    """
    if n < 0 or not 0 <= tp <= max(n, 0):
        raise ValueError(f"need 0 <= tp <= n, found tp={tp}, n={n}")
    return float(precision_lower_bounds(np.array([tp]), np.array([n]), confidence)[0])


def _fold_hash(seed: int, salt: str, *parts: str) -> Column:
    keys = [F.lit(seed), *(F.lit(p) for p in parts), *([F.lit(salt)] if salt else []), F.col("user_id")]
    return F.pmod(F.xxhash64(*keys), F.lit(2))


def split_folds(holdout: DataFrame, seed: int, salt: str = "") -> tuple[DataFrame, DataFrame]:
    """(calibration fold, threshold fold) by a seeded hash of user_id: stable across runs and Spark plans.

    Training salts the hash with the calibration date: users keep their habits for months, so a fixed
    split would hand the same lucky (or unlucky) users to the same fold in every training, and the
    error of the promise would repeat instead of averaging out (benchmarks/RESULTS.md, "Promise ledger").
    """
    _require_columns(holdout, ["user_id"], "holdout")
    fold = _fold_hash(seed, salt)
    return holdout.where(fold == CALIBRATION_FOLD), holdout.where(fold == THRESHOLD_FOLD)


def _reliability(scored: DataFrame, raw_col: str, n_bins: int) -> pd.DataFrame:
    predicted = F.explode(
        F.array(
            F.struct(F.lit("raw").alias("kind"), F.col(raw_col).cast("double").alias("p")),
            F.struct(F.lit("calibrated").alias("kind"), F.col("score").cast("double").alias("p")),
        )
    ).alias("pred")
    long = scored.select(predicted, F.col("label").cast("double").alias("label"))
    # A score of exactly 1.0 belongs to the last bin rather than a bin of its own.
    bin_index = F.least(F.floor(F.col("pred.p") * n_bins), F.lit(n_bins - 1)).cast("int")
    table = (
        long.groupBy(F.col("pred.kind").alias("kind"), bin_index.alias("bin"))
        .agg(
            F.avg("pred.p").alias("mean_predicted"),
            F.avg("label").alias("observed_rate"),
            F.count(F.lit(1)).alias("rows"),
        )
        .toPandas()
    )
    return table.sort_values(["kind", "bin"], ignore_index=True)


def isotonic_knots(boundaries: Sequence[float], predictions: Sequence[float]) -> tuple[tuple[float, float], ...]:
    """(x, y) knots of the centred isotonic map: one per block of the step function, at its centre.

    Spark's isotonic model keeps the first and last raw score of every constant block (boundaries with
    equal predictions). Joining the block centres by straight lines (centred isotonic regression, Oron &
    Flournoy 2017) gives a map that is strictly increasing between the first and the last centre, since
    pooled blocks have strictly increasing values, and that stays within the fitted probabilities.
    """
    knots: list[tuple[float, float]] = []
    start = 0
    for i in range(1, len(boundaries) + 1):
        if i == len(boundaries) or predictions[i] != predictions[start]:
            knots.append(((boundaries[start] + boundaries[i - 1]) / 2.0, float(predictions[start])))
            start = i
    return tuple(knots)


def _sql_double(value: float) -> str:
    return f"CAST({float(value)!r} AS DOUBLE)"


def interpolated_isotonic(knots: Sequence[tuple[float, float]], raw_col: str = "raw_score",
                          out_col: str = "score", tie_break: float = TIE_BREAK) -> SQLTransformer:
    """`out_col = (1 − ε) · f(raw) + ε · raw`, f linear between the knots and flat beyond them.

    Built from Spark SQL built-ins only: `size(filter(xs, x -> x <= raw))` is the number of knots at or
    below the raw score, i.e. the segment to interpolate on. A null raw score gives a null score.
    """
    if not knots:
        raise ValueError("interpolated_isotonic needs at least one knot")
    xs = [x for x, _ in knots]
    if any(b <= a for a, b in itertools.pairwise(xs)):
        raise ValueError(f"knots must have strictly increasing raw scores, got {xs}")
    raw = f"CAST(`{raw_col}` AS DOUBLE)"
    x_arr = "array(" + ", ".join(_sql_double(x) for x in xs) + ")"
    y_arr = "array(" + ", ".join(_sql_double(y) for _, y in knots) + ")"
    k = f"size(filter({x_arr}, x -> x <= {raw}))"
    x_lo, x_hi = f"element_at({x_arr}, {k})", f"element_at({x_arr}, {k} + 1)"
    y_lo, y_hi = f"element_at({y_arr}, {k})", f"element_at({y_arr}, {k} + 1)"
    curve = (f"CASE WHEN {k} = 0 THEN {_sql_double(knots[0][1])} WHEN {k} = {len(knots)} THEN "
             f"{_sql_double(knots[-1][1])} ELSE {y_lo} + ({y_hi} - {y_lo}) * ({raw} - {x_lo}) / ({x_hi} - {x_lo}) END")
    score = (f"CASE WHEN {raw} IS NULL THEN NULL ELSE {_sql_double(1.0 - tie_break)} * ({curve}) + "
             f"{_sql_double(tie_break)} * {raw} END")
    return SQLTransformer(statement=f"SELECT *, {score} AS `{out_col}` FROM __THIS__")


def fit_calibrator(
    holdout: DataFrame, seed: int, raw_col: str = "raw_score", reliability_bins: int = RELIABILITY_BINS,
    salt: str = "",
) -> CalibrationResult:
    """Strictly increasing calibrator `raw_col -> score` fitted on the calibration fold, judged on the threshold fold.

    Isotonic regression (Spark ML) fits the step function; `interpolated_isotonic` joins its block
    centres and breaks the remaining ties with the raw score, so two users the model tells apart never
    share a score: AUC, lift and top-N exports keep the model's full ranking.
    """
    _require_columns(holdout, ["user_id", raw_col, "label"], "holdout")
    calibration, thresholds = split_folds(holdout, seed, salt)
    label = F.col("label").cast("double").alias("label")
    calibration = calibration.select(F.col(raw_col).cast("double").alias(raw_col), label)
    counts = calibration.agg(F.count(F.lit(1)).alias("n")).first()
    if counts is None or counts["n"] == 0:
        raise ValueError("holdout: the calibration fold is empty; the holdout needs more users")
    isotonic = IsotonicRegression(featuresCol=raw_col, labelCol="label", predictionCol="score").fit(calibration)
    knots = isotonic_knots(isotonic.boundaries.toArray().tolist(), isotonic.predictions.toArray().tolist())
    calibrator = interpolated_isotonic(knots, raw_col=raw_col)
    threshold_fold = calibrator.transform(thresholds.withColumn("label", F.col("label").cast("double")))
    stats = threshold_fold.agg(
        F.count(F.lit(1)).alias("rows"),
        F.avg((F.col(raw_col) - F.col("label")) ** 2).alias("brier_before"),
        F.avg((F.col("score") - F.col("label")) ** 2).alias("brier_after"),
    ).first()
    if stats is None or stats["rows"] == 0:
        raise ValueError("holdout: the threshold fold is empty; the holdout needs more users")
    return CalibrationResult(
        calibrator=calibrator,
        threshold_fold=threshold_fold,
        brier_before=float(stats["brier_before"]),
        brier_after=float(stats["brier_after"]),
        calibration_rows=int(counts["n"]),
        threshold_rows=int(stats["rows"]),
        reliability=_reliability(threshold_fold, raw_col, reliability_bins),
        isotonic=isotonic,
        knots=knots,
    )


def score_table(scored: DataFrame, score_col: str = "score") -> pd.DataFrame:
    """Full-resolution cumulative table: one row per distinct score, ascending.

    Columns: threshold, members (rows with score >= threshold), true_positives, precision, recall.
    One Spark aggregation; the cumulative sums run on the driver over the distinct scores.
    """
    _require_columns(scored, [score_col, "label"], "scored")
    label = F.col("label").cast("long")
    groups = (
        scored.groupBy(F.col(score_col).cast("double").alias("threshold"))
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum(label).alias("positives"),
            F.count(F.when(label.isNull() | ~label.isin(0, 1), F.lit(1))).alias("bad_labels"),
        )
        .toPandas()
    )
    # Validation rides on the same aggregation: a null score forms its own group.
    null_scores = int(groups.loc[groups["threshold"].isna(), "rows"].sum())
    bad_labels = int(groups["bad_labels"].sum())
    if null_scores or bad_labels:
        raise ValueError(
            f"scored: {null_scores} row(s) with a null '{score_col}' and {bad_labels} row(s) whose 'label' "
            "is not 0 or 1; score and label every held-out user before choosing thresholds"
        )
    groups = groups.sort_values("threshold", ignore_index=True)
    # Reverse cumulative sums: everyone at or above a threshold is in, so ties enter or leave together.
    members = groups["rows"][::-1].cumsum()[::-1].astype("int64")
    true_positives = groups["positives"][::-1].cumsum()[::-1].astype("int64")
    total_positives = int(groups["positives"].sum())
    return pd.DataFrame(
        {
            "threshold": groups["threshold"].astype(float),
            "members": members,
            "true_positives": true_positives,
            "precision": true_positives / members,
            "recall": true_positives / total_positives if total_positives else 0.0,
        }
    )


def _as_table(scored: DataFrame | pd.DataFrame) -> pd.DataFrame:
    return scored if isinstance(scored, pd.DataFrame) else score_table(scored)


def threshold_curve(scored: DataFrame | pd.DataFrame, n_points: int, confidence: float) -> pd.DataFrame:
    """The precision/recall/size curve at up to `n_points` distinct thresholds, ascending.

    Points are spread evenly in segment size, from everyone down to the top tied group, so a
    precision slider moves in even steps; each threshold is an observed score, so its counts are exact.
    Ties collapse points: a holdout with few distinct scores yields fewer points.
    """
    if n_points < 2:
        raise ValueError(f"n_points must be at least 2, found {n_points}")
    table = _as_table(scored)
    if table.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in CURVE_COLUMNS})
    members = table["members"].to_numpy()
    wanted_sizes = np.linspace(members[0], members[-1], n_points)
    # members is descending; the last index with members >= wanted size is the highest such threshold.
    ascending = members[::-1]
    indices = len(members) - np.searchsorted(ascending, wanted_sizes, side="left") - 1
    points = table.iloc[np.unique(np.clip(indices, 0, len(members) - 1))].reset_index(drop=True)
    points["precision_lower"] = precision_lower_bounds(points["true_positives"], points["members"], confidence)
    return points[CURVE_COLUMNS]


def _unreachable(
    level: str, target: float, table: pd.DataFrame, min_segment_size: int, confidence: float
) -> ThresholdChoice:
    large_enough = table[table["members"] >= min_segment_size]
    candidates = large_enough if not large_enough.empty else table
    if candidates.empty:
        best_precision, best_members = 0.0, 0
    else:
        # Among equally precise sets the larger one (lower threshold) is the more useful report.
        best = candidates.sort_values(["precision", "members"], ascending=[False, False]).iloc[0]
        best_precision, best_members = float(best["precision"]), int(best["members"])
    size_note = "" if not large_enough.empty or table.empty else f"; no set reaches {min_segment_size} members"
    return ThresholdChoice(
        level=level,
        target_precision=target,
        status=STATUS_UNREACHABLE,
        threshold=None,
        expected_precision=None,
        precision_lower=None,
        expected_recall=None,
        holdout_members=0,
        best_precision=best_precision,
        best_precision_members=best_members,
        reason=(
            f"no threshold has a {confidence:.0%} precision lower bound >= {target} with >= {min_segment_size} "
            f"members; best precision {best_precision:.4f} at {best_members} members{size_note}"
        ),
    )


def choose_thresholds(
    scored: DataFrame | pd.DataFrame, levels: Mapping[str, float], min_segment_size: int, confidence: float
) -> dict[str, ThresholdChoice]:
    """For each level, the lowest threshold whose precision lower bound >= target with >= min size members.

    Every distinct score is a candidate (full resolution, not the curve's points). The lowest such
    threshold keeps the most users, so recall is maximal while the promise holds. A level that no
    threshold meets is `precision_unreachable`; it is never lowered to the best available precision.
    """
    for level, target in levels.items():
        if not 0.0 < target <= 1.0:
            raise ValueError(f"precision level '{level}': target must be in (0, 1], found {target}")
    if min_segment_size < 1:
        raise ValueError(f"min_segment_size must be at least 1, found {min_segment_size}")
    table = _as_table(scored)
    lower = precision_lower_bounds(table["true_positives"], table["members"], confidence)
    choices: dict[str, ThresholdChoice] = {}
    for level, target in levels.items():
        # The float tolerance keeps a bound equal to the target (up to rounding) on the promised side.
        qualifies = (lower >= target - 1e-12) & (table["members"].to_numpy() >= min_segment_size)
        if not qualifies.any():
            choices[level] = _unreachable(level, target, table, min_segment_size, confidence)
            continue
        first = int(np.argmax(qualifies))
        row = table.iloc[first]
        large_enough = table[table["members"] >= min_segment_size]
        best = large_enough.sort_values(["precision", "members"], ascending=[False, False]).iloc[0]
        choices[level] = ThresholdChoice(
            level=level,
            target_precision=target,
            status=STATUS_OK,
            threshold=float(row["threshold"]),
            expected_precision=float(row["precision"]),
            precision_lower=float(lower[first]),
            expected_recall=float(row["recall"]),
            holdout_members=int(row["members"]),
            best_precision=float(best["precision"]),
            best_precision_members=int(best["members"]),
        )
    return choices


def counts_at(table: pd.DataFrame, threshold: float) -> tuple[int, int]:
    """(members, true positives) of a `score_table` at `threshold`: everyone scoring >= it."""
    index = int(np.searchsorted(table["threshold"].to_numpy(), threshold, side="left"))
    if index >= len(table):
        return 0, 0
    return int(table["members"].iloc[index]), int(table["true_positives"].iloc[index])


def split_threshold_fold(threshold_fold: DataFrame, seed: int, salt: str = "") -> tuple[DataFrame, DataFrame]:
    """(choice half, evidence half) of the threshold fold, by a second seeded hash of user_id.

    The choice half picks each level's threshold; the evidence half, which neither fitted the calibrator
    nor chose the threshold, counts members and true positives at that very threshold (`with_evidence`).
    """
    _require_columns(threshold_fold, ["user_id"], "threshold_fold")
    half = _fold_hash(seed, salt, "promise")
    return threshold_fold.where(half == 0), threshold_fold.where(half == 1)


def with_evidence(choices: Mapping[str, ThresholdChoice], evidence_table: pd.DataFrame) -> dict[str, ThresholdChoice]:
    """The choices with the evidence half's (members, true positives) at each level's threshold attached.

    The precision the choice half shows at the threshold it chose is optimistic: "the lowest threshold
    whose bound clears the target" is more often one where those users happened to be lucky, and the
    smaller the set, the larger the luck (the first 30-night ledger measured realized precision 0.006
    below it at 1,000 members and 0.08 below at 70). Counting the same threshold on users that took no
    part in choosing it removes that selection bias. An unreachable level keeps (0, 0).
    """
    attached: dict[str, ThresholdChoice] = {}
    for level, choice in choices.items():
        reachable = choice.threshold is not None
        members, true_positives = counts_at(evidence_table, choice.threshold) if reachable else (0, 0)
        attached[level] = replace(choice, promise_members=members, promise_true_positives=true_positives)
    return attached


# The artifacts of a training run that `choose_levels` needs: the two halves' score tables.
LEVEL_TABLE_ARTIFACTS = ("threshold_choice_half.csv", "threshold_evidence_half.csv")


def choose_levels(tables: tuple[pd.DataFrame, pd.DataFrame], levels: Mapping[str, float], min_segment_size: int,
                  confidence: float) -> dict[str, ThresholdChoice]:
    """Each level's threshold chosen on the choice half's table, with the evidence half's counts attached.

    The one rule for training and for a level first asked for at night (from the stored tables): the
    minimum size counts threshold-fold members, and the choice half holds about half of them.
    """
    choice_table, evidence_table = tables
    choices = choose_thresholds(choice_table, levels, max(1, min_segment_size // 2), confidence)
    return with_evidence(choices, evidence_table)


def member_flag(score: Column, choice: ThresholdChoice) -> Column:
    """True when the score reaches the level's threshold; always false for an unreachable level or a null score."""
    if choice.status != STATUS_OK or choice.threshold is None:
        return F.lit(False)
    return F.coalesce(score >= F.lit(choice.threshold), F.lit(False))


def precision_tier(score: Column, choices: Mapping[str, ThresholdChoice]) -> Column:
    """The name of the strictest reachable level whose threshold the score reaches, else null."""
    reachable = sorted(
        (c for c in choices.values() if c.status == STATUS_OK and c.threshold is not None),
        key=lambda c: c.target_precision,
        reverse=True,
    )
    tier: Column = F.lit(None).cast("string")
    # Built from the loosest level outwards so the strictest level's test is evaluated first.
    for choice in reversed(reachable):
        tier = F.when(score >= F.lit(choice.threshold), F.lit(choice.level)).otherwise(tier)
    return tier


def expected_sizes(scored_today: DataFrame, thresholds: Sequence[float | None], score_col: str = "score") -> list[int]:
    """How many of today's scored users reach each threshold (0 for None), in one aggregation."""
    _require_columns(scored_today, [score_col], "scored_today")
    counts = [
        F.count(F.when(F.col(score_col) >= F.lit(t), F.lit(1))).alias(f"n{i}")
        for i, t in enumerate(thresholds)
        if t is not None and not math.isnan(t)
    ]
    row = scored_today.agg(*counts).first() if counts else None
    sizes: list[int] = []
    for i, t in enumerate(thresholds):
        sizes.append(int(row[f"n{i}"]) if row is not None and t is not None and not math.isnan(t) else 0)
    return sizes
