"""Uplift learners on Spark ML GBT: who acts *because* they are contacted, from randomized exposures.

The training frame is the propensity frame (features and `label` per user and snapshot) plus a
`treated` column: 1 when the user was exposed at the start of the prediction window. Exposure must be
randomized (a known share of users sent at random); then the treated and control users at a
snapshot are exchangeable, and the difference of their outcome rates is the causal effect.

Learners (Künzel et al. 2019; Jaskowski & Jaroszewicz 2012), each built from the segment pipeline
(`pipeline.build_pipeline`: null filling, BG/NBD inputs, GBT), so features mean what they mean for
every other segment:

* `t_learner`: one classifier on the treated rows, one on the control rows; uplift = p₁(x) − p₀(x).
  Simple and unbiased per arm, but each arm's model has half the data, and the difference of two
  noisy scores is noisier than either.
* `class_transformation`: one classifier of z = 1 when (treated and outcome) or (control and no
  outcome). With both arms weighted to equal total weight (treated 0.5 / e, control 0.5 / (1 − e),
  e the treated share), P(z = 1 | x) = (1 + p₁(x) − p₀(x)) / 2, so uplift = 2 P(z = 1 | x) − 1. One
  model on all rows, fitted to the effect directly.
* `x_learner`: the T-learner's two response models impute each user's effect from the other arm
  (treated: y − μ₀(x); control: μ₁(x) − y), a GBT regression per arm (`build_regression_pipeline`)
  fits those effects, and uplift = e·τ₀(x) + (1 − e)·τ₁(x). Four fits; the effect is often a simpler
  function than either response surface.

`fit_uplift` chooses among them like the propensity search chooses GBT params: each learner fits
on the older snapshots and is judged by its Qini coefficient on the newest two, then the winner is
refitted on every snapshot (a tie keeps the first learner listed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pyspark.ml import PipelineModel
from pyspark.ml.feature import SQLTransformer
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from segments_lib.language.definitions import GbtParams
from segments_lib.language.snapshots import as_utc
from segments_lib.model import uplift_metrics
from segments_lib.model.pipeline import (
    LABEL_COL,
    RAW_SCORE,
    SNAPSHOT_COL,
    WEIGHT_COL,
    build_pipeline,
    build_regression_pipeline,
)

log = logging.getLogger(__name__)

TREATED_COL = "treated"
UPLIFT_COL = "uplift"
SCORE_COL = "score"  # the membership contract's column: for an uplift segment, the predicted uplift
P_TREATED, P_CONTROL = "p_treated", "p_control"
T_LEARNER, CLASS_TRANSFORMATION, X_LEARNER = "t_learner", "class_transformation", "x_learner"
LEARNERS = (T_LEARNER, CLASS_TRANSFORMATION, X_LEARNER)


@dataclass(frozen=True)
class UpliftModel:
    """A fitted learner: its pipeline models and the treated share it was fitted with."""
    learner: str
    treated_share: float
    # t_learner: (treated arm, control arm); class_transformation: (z model,);
    # x_learner: (effect regression on the treated, effect regression on the control users)
    models: tuple[PipelineModel, ...]

    def transform(self, df: DataFrame) -> DataFrame:
        """`df` with `uplift` (and, for the T-learner, `p_treated` and `p_control`) added."""
        if self.learner == T_LEARNER:
            treated_arm, control_arm = self.models
            scored = _score_as(control_arm, _score_as(treated_arm, df, P_TREATED), P_CONTROL)
            return scored.withColumn(UPLIFT_COL, F.col(P_TREATED) - F.col(P_CONTROL))
        if self.learner == X_LEARNER:
            on_treated, on_control = self.models
            scored = _score_as(on_control, _score_as(on_treated, df, "_tau1"), "_tau0")
            return scored.withColumn(UPLIFT_COL, F.expr(self._x_combination("`_tau1`", "`_tau0`"))).drop(
                "_tau1", "_tau0")
        (z_model,) = self.models
        return _score_as(z_model, df, "_z").withColumn(UPLIFT_COL, 2.0 * F.col("_z") - 1.0).drop("_z")

    def _x_combination(self, tau1: str, tau0: str) -> str:
        """Künzel's g·τ₀ + (1 − g)·τ₁ (SQL) with g the treated share: the arm with more rows weighs the
        other's effect model more, since that model's imputed effects used the better-fitted response model."""
        return f"{tau0} * {self.treated_share!r} + {tau1} * {1.0 - self.treated_share!r}"

    def as_pipeline(self, example: DataFrame) -> PipelineModel:
        """One Spark ML pipeline that adds `score` (the predicted uplift) to frames shaped like `example`.

        The nightly job scores, copies and logs every model as a single pipeline whose output is `score`,
        so an uplift model goes through the same MLflow logging, registry, champion copy and scoring
        as a propensity model. Each arm's own columns (filled features, vector, probabilities) are
        dropped after it runs, since both arms' pipelines write the same names; which columns those are
        is read off the arm's output schema on `example` (analysis only, no job runs). Every other
        column passes through, so the pipeline scores a frame with or without `user_id`.
        """
        stages: list = []
        if self.learner == T_LEARNER:
            treated_arm, control_arm = self.models
            for arm, column in ((treated_arm, P_TREATED), (control_arm, P_CONTROL)):
                stages += [arm, _keep_score_as(arm, example, column)]
            stages.append(SQLTransformer(
                statement=f"SELECT *, `{P_TREATED}` - `{P_CONTROL}` AS `{SCORE_COL}` FROM __THIS__"))
        elif self.learner == X_LEARNER:
            on_treated, on_control = self.models
            stages += [on_treated, _keep_score_as(on_treated, example, "_tau1"),
                       on_control, _keep_score_as(on_control, example, "_tau0"),
                       SQLTransformer(statement=f"SELECT * EXCEPT (`_tau1`, `_tau0`), "
                                                f"{self._x_combination('`_tau1`', '`_tau0`')} AS `{SCORE_COL}` "
                                                "FROM __THIS__")]
        else:
            (z_model,) = self.models
            stages += [z_model, _keep_score_as(z_model, example, "_z"),
                       SQLTransformer(statement=f"SELECT * EXCEPT (`_z`), 2.0 * `_z` - 1.0 AS `{SCORE_COL}` "
                                                "FROM __THIS__")]
        return PipelineModel(stages=stages)


def _keep_score_as(model: PipelineModel, example: DataFrame, column: str) -> SQLTransformer:
    """A stage that drops the columns `model` adds to `example`, keeping its positive-class probability as `column`."""
    added = ", ".join(f"`{c}`" for c in model.transform(example).columns if c not in set(example.columns))
    return SQLTransformer(statement=f"SELECT * EXCEPT ({added}), `{RAW_SCORE}` AS `{column}` FROM __THIS__")


def _score_as(model: PipelineModel, df: DataFrame, column: str) -> DataFrame:
    """`df` plus the model's positive-class probability as `column`; the pipeline's own columns dropped."""
    return model.transform(df).select(*[F.col(f"`{c}`") for c in df.columns], F.col(RAW_SCORE).alias(column))


def treated_share(df: DataFrame) -> float:
    """The share of rows treated; ValueError when one arm is empty (nothing to compare)."""
    row = df.agg(F.count(F.lit(1)).alias("n"), F.sum(F.col(TREATED_COL).cast("double")).alias("t")).first()
    n, t = int(row["n"]), float(row["t"] or 0.0)
    if t == 0 or t == n:
        raise ValueError(f"uplift training needs treated and control rows, found {int(t)} treated of {n}")
    return t / n


def fit_t_learner(data: DataFrame, feature_cols: list[str], params: GbtParams, seed: int,
                  trainer: str = "gbt") -> UpliftModel:
    share = treated_share(data)
    rows = data.withColumn(WEIGHT_COL, F.lit(1.0))
    arms = tuple(build_pipeline(feature_cols, params, seed, trainer=trainer)
                 .fit(rows.where(F.col(TREATED_COL) == arm))
                 for arm in (1, 0))
    return UpliftModel(T_LEARNER, share, arms)


def fit_class_transformation(data: DataFrame, feature_cols: list[str], params: GbtParams,
                             seed: int, trainer: str = "gbt") -> UpliftModel:
    share = treated_share(data)
    treated, outcome = F.col(TREATED_COL) == 1, F.col(LABEL_COL) == 1
    rows = (data.withColumn(LABEL_COL, F.when(treated == outcome, 1.0).otherwise(0.0))
            .withColumn(WEIGHT_COL, F.when(treated, F.lit(0.5 / share)).otherwise(F.lit(0.5 / (1.0 - share)))))
    model = build_pipeline(feature_cols, params, seed, trainer=trainer).fit(rows)
    return UpliftModel(CLASS_TRANSFORMATION, share, (model,))


def fit_x_learner(data: DataFrame, feature_cols: list[str], params: GbtParams, seed: int,
                  trainer: str = "gbt") -> UpliftModel:
    """Künzel et al.'s X-learner: each arm's response model imputes the other arm's individual effects
    (treated: y − μ₀(x); control: μ₁(x) − y), and a GBT regression of those effects per arm predicts the
    uplift directly. The effect is often simpler than either response surface, and the regressions fit it
    with all of their arm's rows instead of differencing two noisy probabilities."""
    share = treated_share(data)
    rows = data.withColumn(WEIGHT_COL, F.lit(1.0))
    treated_rows, control_rows = rows.where(F.col(TREATED_COL) == 1), rows.where(F.col(TREATED_COL) == 0)
    response_treated = build_pipeline(feature_cols, params, seed, trainer=trainer).fit(treated_rows)
    response_control = build_pipeline(feature_cols, params, seed, trainer=trainer).fit(control_rows)
    effect_treated = _score_as(response_control, treated_rows, "_mu").withColumn(
        LABEL_COL, F.col(LABEL_COL) - F.col("_mu")).drop("_mu")
    effect_control = _score_as(response_treated, control_rows, "_mu").withColumn(
        LABEL_COL, F.col("_mu") - F.col(LABEL_COL)).drop("_mu")
    regressions = tuple(build_regression_pipeline(feature_cols, params, seed, trainer).fit(effects)
                        for effects in (effect_treated, effect_control))
    return UpliftModel(X_LEARNER, share, regressions)


FITTERS = {T_LEARNER: fit_t_learner, CLASS_TRANSFORMATION: fit_class_transformation, X_LEARNER: fit_x_learner}


def qini_of(model: UpliftModel, rows: DataFrame) -> float:
    """The model's Qini coefficient on randomized `rows` (collected: one row per user, three columns)."""
    scored = model.transform(rows).select(UPLIFT_COL, TREATED_COL, LABEL_COL).toPandas()
    return uplift_metrics.qini_coefficient(scored[UPLIFT_COL].to_numpy(), scored[TREATED_COL].to_numpy(),
                                           scored[LABEL_COL].to_numpy())


@dataclass(frozen=True)
class UpliftFit:
    model: UpliftModel
    validation_qini: dict[str, float]  # learner -> Qini coefficient on the newest snapshots (empty: no choice)
    validation_snapshots: tuple[datetime, ...]
    n_train: int
    fit_seconds: float


# A Qini coefficient of one snapshot is noisy: on the demo (3,600 users a snapshot, a 3-point mean
# effect) random rankings scatter with a standard deviation of 0.0024 around 0, as large as the gap
# between learners. Two snapshots halve the variance; more would leave little to fit on.
VALIDATION_SNAPSHOTS = 2


def fit_uplift(train_df: DataFrame, feature_cols: list[str], params: GbtParams, seed: int,
               learners: Sequence[str] = LEARNERS, validation_snapshots: int = VALIDATION_SNAPSHOTS,
               trainer: str = "gbt") -> UpliftFit:
    """Choose a learner on the newest training snapshots (Qini), then refit it on every snapshot.

    The validation snapshots are the newest `validation_snapshots`, fewer when the frame has fewer
    than one more than that (at least one snapshot stays to fit on); a single snapshot means no choice.
    """
    unknown = [name for name in learners if name not in FITTERS]
    if unknown or not learners:
        raise ValueError(f"unknown uplift learners {unknown}; choose from {', '.join(LEARNERS)}")
    start = time.perf_counter()
    missing = [c for c in (SNAPSHOT_COL, LABEL_COL, TREATED_COL, *feature_cols) if c not in train_df.columns]
    if missing:
        raise ValueError(f"uplift training frame lacks columns: {', '.join(missing)}")
    cores = train_df.sparkSession.sparkContext.defaultParallelism
    data = (train_df.select(SNAPSHOT_COL, *feature_cols, F.col(LABEL_COL).cast("double").alias(LABEL_COL),
                            F.col(TREATED_COL).cast("int").alias(TREATED_COL))
            .coalesce(max(cores, 1)).localCheckpoint(eager=True))  # why: see fit_with_time_validation
    snapshots = sorted(as_utc(r[SNAPSHOT_COL]) for r in data.select(SNAPSHOT_COL).distinct().collect())
    if not snapshots:
        raise ValueError("uplift training frame is empty")
    chosen, qinis, held = learners[0], {}, ()
    if len(learners) > 1 and len(snapshots) > 1:
        held = tuple(snapshots[-min(validation_snapshots, len(snapshots) - 1):])
        older = data.where(F.col(SNAPSHOT_COL) < F.lit(held[0]))
        newest = data.where(F.col(SNAPSHOT_COL) >= F.lit(held[0]))
        for name in learners:
            qinis[name] = qini_of(FITTERS[name](older, feature_cols, params, seed, trainer), newest)
            log.info("uplift learner %s: validation Qini coefficient %.5f", name, qinis[name])
        chosen = max(learners, key=lambda name: qinis[name])  # max keeps the first of ties
    model = FITTERS[chosen](data, feature_cols, params, seed, trainer)
    return UpliftFit(model, qinis, held, data.count(), time.perf_counter() - start)
