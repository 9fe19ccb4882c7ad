"""The segment model: a Spark ML pipeline around a gradient-boosted tree classifier, chosen by a time-based search.

Pipeline stages, in order:

1. `SQLTransformer` filling "never happened" nulls. The features contract makes every null a
   "never": recency and gap features of an event the user never did. Trees split on thresholds, so
   a sentinel far above any real value (`NEVER_SENTINEL`) makes "never" sort as "longer ago than
   anything observed", which is what it means; counts are already 0 and pass through unchanged.
   No null reaches the assembler.
2. `VectorAssembler` over the filled columns.
3. The tree ensemble `training.trainer` names (model/trainers.py): `GBTClassifier(weightCol="weight",
   seed=seed)` by default, or xgboost's `SparkXGBClassifier` with the same settings translated.
4. `PositiveProbability`: `raw_score = vector_to_array(probability)[1]` (Spark SQL has no
   `vector_to_array`, so a SQLTransformer cannot do it; this stage wraps the built-in column function).
5. For an `occurs` target with BG/NBD columns, `QuantileBlend` (model/blend.py): `raw_score` becomes the
   average of the GBT score's and the target events' BG/NBD rate's training-row quantiles, and the
   GBT's own score is kept as `gbt_score`. With `score_blend: auto` the validation fold decides whether
   the stage stays (`fit_with_time_validation`).

When the features carry the customer-base family (`count_all__e`, `span_days__e`, `first_days__e`,
see features/spec.py), a `BgNbd` stage runs before the assembler: it fits BG/NBD (model/bgnbd.py) on
the training rows it is given and adds, per event, P(alive) and the expected rate
`P(alive) · (r + x) / (α + T)` (purchases per day now) as two more inputs, and, given the segment's
horizon H, the probability of at least one occurrence in the next H, `P(alive) · (1 − ((α + T) / (α + T + H))^(r + x))`.
Trees cannot build those ratios and powers from x, t_x and T themselves, and the fit sees only the
rows the pipeline trains on. Why the third: over a long horizon the rate over-ranks heavy buyers, who
buy again almost surely either way; on Online Retail at H = 90d P(any) ranked the next buyers 0.004–0.006
AUC-ROC above the rate (benchmarks/RESULTS.md, issue 19, third round).

Class imbalance: by default (`training.class_weight: none`) every row weighs 1. With `balanced`,
`with_class_weights` gives positives the weight n_neg / n_pos and negatives 1, so both classes carry
equal total weight. Either way the calibration step maps raw scores to base-rate probabilities.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model, Pipeline, PipelineModel, Transformer
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import SQLTransformer, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from segments_lib.language.definitions import GbtParams, TrainingSettings
from segments_lib.language.snapshots import as_utc
from segments_lib.model.bgnbd import BgNbdParams, fit_bgnbd
from segments_lib.model.blend import GBT_SCORE, QuantileBlend
from segments_lib.model.trainers import check_trainer, classifier, ensemble_importances, is_ensemble, regressor

log = logging.getLogger(__name__)

NEVER_SENTINEL = 1.0e9  # far outside every real recency/gap (days or seconds) and any count
LABEL_COL = "label"
WEIGHT_COL = "weight"
SNAPSHOT_COL = "snapshot_time"
FEATURES_VECTOR = "features"
RAW_SCORE = "raw_score"
FILLED_SUFFIX = "__filled"


class PositiveProbability(Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable, DefaultParamsWritable):
    """Exposes the positive-class probability of a probability vector as a plain double column."""
    @keyword_only
    def __init__(self, inputCol: str = "probability", outputCol: str = RAW_SCORE) -> None:
        super().__init__()
        self._set(**self._input_kwargs)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        return dataset.withColumn(self.getOutputCol(), vector_to_array(F.col(self.getInputCol()))[1])


BASE_PREFIXES = ("count_all__", "span_days__", "first_days__")
BGNBD_FIT_ROWS = 200_000  # a sample this large pins four parameters; the fit runs on the driver
BGNBD_ROUNDING_DAYS = 1  # (x, t_x, T) rounded to whole days before grouping: fewer distinct triples


def base_slugs(feature_cols: list[str]) -> list[str]:
    """Event slugs whose BG/NBD statistics (count_all, span_days, first_days) are all feature columns."""
    present = set(feature_cols)
    return [c[len("count_all__"):] for c in feature_cols if c.startswith("count_all__")
            and all(p + c[len("count_all__"):] in present for p in BASE_PREFIXES)]


def bgnbd_columns(slugs: Sequence[str], with_horizon: bool = False) -> list[str]:
    families = ("bgnbd_p_alive", "bgnbd_rate", *(("bgnbd_p_any",) if with_horizon else ()))
    return [f"{family}__{slug}" for slug in slugs for family in families]


class _HasSlugs(Params):
    slugs = Param(Params._dummy(), "slugs", "event slugs with customer-base columns", TypeConverters.toListString)
    fitted = Param(Params._dummy(), "fitted", "JSON {slug: {r, alpha, a, b}}", TypeConverters.toString)
    horizonDays = Param(Params._dummy(), "horizonDays",
                        "days H of `bgnbd_p_any__<slug>` = P(at least one in the next H); 0 adds no such column",
                        TypeConverters.toFloat)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(horizonDays=0.0)  # models saved before the parameter existed load with it


class BgNbdModel(Model, _HasSlugs, DefaultParamsReadable, DefaultParamsWritable):
    """Adds `bgnbd_p_alive__<slug>`, `bgnbd_rate__<slug>` and, with a horizon, `bgnbd_p_any__<slug>` from
    fitted BG/NBD parameters (built-ins only)."""

    @keyword_only
    def __init__(self, slugs: list[str] | None = None, fitted: str = "{}", horizonDays: float = 0.0) -> None:
        super().__init__()
        self._set(**self._input_kwargs)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        fitted = json.loads(self.getOrDefault(self.fitted))
        horizon = float(self.getOrDefault(self.horizonDays))
        added = []
        for slug in self.getOrDefault(self.slugs):
            p = fitted[slug]
            x = F.col(f"count_all__{slug}") - F.lit(1.0)
            t_x, age = F.col(f"span_days__{slug}"), F.col(f"first_days__{slug}")
            log_ratio = F.log(F.lit(p["alpha"]) + age) - F.log(F.lit(p["alpha"]) + t_x)
            odds = F.lit(p["a"]) / F.greatest(F.lit(p["b"]) + x - F.lit(1.0), F.lit(1e-12)) * F.exp(
                F.least((F.lit(p["r"]) + x) * log_ratio, F.lit(700.0)))
            alive = F.when(x > 0, F.lit(1.0) / (F.lit(1.0) + odds)).otherwise(F.lit(1.0))
            rate = alive * (F.lit(p["r"]) + x) / (F.lit(p["alpha"]) + age)
            # Never did the event: no customer yet, so no chance of being an alive one; 0 rather than null.
            never = F.col(f"count_all__{slug}") < 1
            added += [F.when(never, F.lit(0.0)).otherwise(alive).alias(f"bgnbd_p_alive__{slug}"),
                      F.when(never, F.lit(0.0)).otherwise(rate).alias(f"bgnbd_rate__{slug}")]
            if horizon > 0:
                # Alive at T, λ's posterior is Gamma(r + x, α + T); P(no event in H) is its Laplace transform.
                silent = F.exp((F.lit(p["r"]) + x) * (F.log(F.lit(p["alpha"]) + age)
                                                      - F.log(F.lit(p["alpha"]) + age + F.lit(horizon))))
                added.append(F.when(never, F.lit(0.0)).otherwise(alive * (F.lit(1.0) - silent))
                             .alias(f"bgnbd_p_any__{slug}"))
        return dataset.select("*", *added)


class BgNbd(Estimator, _HasSlugs):
    """Fits one BG/NBD per event slug on the rows it is given (every snapshot's customers pooled)."""

    @keyword_only
    def __init__(self, slugs: list[str] | None = None, horizonDays: float = 0.0) -> None:
        super().__init__()
        self._set(**self._input_kwargs)

    def _fit(self, dataset: DataFrame) -> BgNbdModel:
        fitted = {}
        for slug in self.getOrDefault(self.slugs):
            customers = dataset.where(F.col(f"count_all__{slug}") >= 1)
            total = customers.count()
            if total > BGNBD_FIT_ROWS:
                customers = customers.sample(fraction=BGNBD_FIT_ROWS / total, seed=7)
            day = float(BGNBD_ROUNDING_DAYS)
            triples = customers.groupBy(
                (F.col(f"count_all__{slug}") - 1).alias("x"),
                (F.round(F.col(f"span_days__{slug}") / day) * day).alias("t_x"),
                (F.round(F.col(f"first_days__{slug}") / day) * day).alias("T"),
            ).agg(F.count(F.lit(1)).alias("n")).toPandas()
            if triples.empty:
                fitted[slug] = asdict(BgNbdParams(1.0, 1.0, 1.0, 1.0))
                continue
            t_x = np.minimum(triples["t_x"].to_numpy(float), triples["T"].to_numpy(float))
            fitted[slug] = asdict(fit_bgnbd(triples["x"].to_numpy(float), t_x, triples["T"].to_numpy(float),
                                                  weights=triples["n"].to_numpy(float)))
        return BgNbdModel(slugs=self.getOrDefault(self.slugs), fitted=json.dumps(fitted),
                          horizonDays=self.getOrDefault(self.horizonDays))


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def never_fill_statement(feature_cols: list[str]) -> str:
    filled = ", ".join(
        f"coalesce(CAST({_quoted(c)} AS DOUBLE), {NEVER_SENTINEL!r}) AS {_quoted(c + FILLED_SUFFIX)}"
        for c in feature_cols
    )
    return f"SELECT *, {filled} FROM __THIS__"


def build_pipeline(feature_cols: list[str], params: GbtParams, seed: int,
                   blend_slugs: Sequence[str] = (), horizon_days: float = 0.0, trainer: str = "gbt") -> Pipeline:
    """The segment's pipeline; `blend_slugs` (model.blend.blend_slugs) adds the BG/NBD quantile blend.

    `horizon_days` (the segment's prediction window) adds BG/NBD's P(at least one in the horizon) as an
    input, and the blend then ranks by it instead of the rate. `trainer` (model/trainers.py) names the
    tree ensemble: Spark's GBT or xgboost's Spark estimator, with the same `params`.
    """
    check_trainer(trainer)
    if not feature_cols:
        raise ValueError("build_pipeline needs at least one feature column")
    duplicates = sorted({c for c in feature_cols if feature_cols.count(c) > 1})
    if duplicates:
        raise ValueError(f"feature columns listed twice: {', '.join(duplicates)}")
    ensemble = classifier(trainer, params, seed, FEATURES_VECTOR, LABEL_COL, WEIGHT_COL)
    slugs = base_slugs(feature_cols)
    missing = [s for s in blend_slugs if s not in slugs]
    if missing:
        raise ValueError(f"blend events without BG/NBD feature columns: {', '.join(missing)}")
    family = "bgnbd_p_any" if horizon_days > 0 else "bgnbd_rate"
    blend = [QuantileBlend(slugs=list(blend_slugs), scoreCol=RAW_SCORE, family=family)] if blend_slugs else []
    return Pipeline(stages=[
        *_input_stages(feature_cols, horizon_days),
        ensemble,
        PositiveProbability(inputCol="probability", outputCol=RAW_SCORE),
        *blend,
    ])


def _input_stages(feature_cols: list[str], horizon_days: float = 0.0) -> list:
    """Never-filling, the BG/NBD inputs and the feature vector: what every pipeline's GBT reads."""
    slugs = base_slugs(feature_cols)
    customer_base = [BgNbd(slugs=slugs, horizonDays=float(horizon_days))] if slugs else []
    return [
        SQLTransformer(statement=never_fill_statement(feature_cols)),
        *customer_base,
        VectorAssembler(inputCols=[c + FILLED_SUFFIX for c in feature_cols]
                        + bgnbd_columns(slugs, with_horizon=horizon_days > 0),
                        outputCol=FEATURES_VECTOR),
    ]


def build_regression_pipeline(feature_cols: list[str], params: GbtParams, seed: int,
                              trainer: str = "gbt") -> Pipeline:
    """The segment's inputs with a tree regressor (squared loss) writing its prediction to `raw_score`.

    For targets that are not classes: the X-learner's imputed treatment effects (model.uplift).
    """
    if not feature_cols:
        raise ValueError("build_regression_pipeline needs at least one feature column")
    check_trainer(trainer)
    ensemble = regressor(trainer, params, seed, FEATURES_VECTOR, LABEL_COL, WEIGHT_COL, RAW_SCORE)
    return Pipeline(stages=[*_input_stages(feature_cols), ensemble])


def with_class_weights(df: DataFrame, balanced: bool = True) -> tuple[DataFrame, float]:
    """`df` with a `weight` column and the positives' weight: n_neg/n_pos if `balanced`, else 1 (negatives 1)."""
    counts = df.agg(
        F.sum(F.when(F.col(LABEL_COL) == 1, 1).otherwise(0)).alias("positives"),
        F.sum(F.when(F.col(LABEL_COL) == 0, 1).otherwise(0)).alias("negatives"),
    ).first()
    positives, negatives = int(counts["positives"] or 0), int(counts["negatives"] or 0)
    if positives == 0 or negatives == 0:
        raise ValueError(f"training rows need both classes, found {positives} positives and {negatives} negatives")
    positive_weight = negatives / positives if balanced else 1.0
    weighted = df.withColumn(
        WEIGHT_COL, F.when(F.col(LABEL_COL) == 1, F.lit(positive_weight)).otherwise(F.lit(1.0))
    )
    return weighted, positive_weight


def default_search_grid(base: GbtParams) -> tuple[GbtParams, ...]:
    """The configured params plus a shallower and a deeper tree: small, because each candidate is a full fit."""
    shallower = replace(base, max_depth=max(2, base.max_depth - 2))
    deeper = replace(base, max_depth=base.max_depth + 2)
    return tuple(dict.fromkeys((base, shallower, deeper)))


def search_candidates(settings: TrainingSettings) -> tuple[GbtParams, ...]:
    """Configured params first; `search: []` means no search, an absent `search` the default grid."""
    if settings.search is None:
        return default_search_grid(settings.gbt)
    return tuple(dict.fromkeys((settings.gbt, *settings.search)))


@dataclass(frozen=True)
class CandidateScore:
    params: GbtParams
    validation_auc_pr: float
    blended: bool = False  # the score judged: the BG/NBD blend's (model.blend) or the GBT's alone


@dataclass(frozen=True)
class FitResult:
    model: PipelineModel
    params: GbtParams
    candidates: tuple[CandidateScore, ...]  # empty when there was a single training snapshot
    validation_snapshot: datetime | None
    n_train: int
    n_validation: int
    positive_weight: float
    fit_seconds: float
    blended: bool = False  # the model's raw_score is the BG/NBD blend (model.blend), `gbt_score` the GBT's


def auc_pr(scored: DataFrame, score_col: str = RAW_SCORE) -> float:
    evaluator = BinaryClassificationEvaluator(
        rawPredictionCol=score_col, labelCol=LABEL_COL, metricName="areaUnderPR"
    )
    return float(evaluator.evaluate(scored))


def _prepared(df: DataFrame, feature_cols: list[str]) -> DataFrame:
    missing = [c for c in (SNAPSHOT_COL, LABEL_COL, *feature_cols) if c not in df.columns]
    if missing:
        raise ValueError(f"training frame lacks columns: {', '.join(missing)}")
    return df.select(SNAPSHOT_COL, *feature_cols, F.col(LABEL_COL).cast("double").alias(LABEL_COL))


def fit_with_time_validation(train_df: DataFrame, feature_cols: list[str], settings: TrainingSettings,
                             blend_slugs: Sequence[str] = (), horizon_days: float = 0.0) -> FitResult:
    """Pick GBT params (and, with `score_blend: auto`, blend or not) on the newest training snapshot, then refit.

    Never a random split: the validation fold is later in time than everything it was fit on, as the
    holdout will be. With a single training snapshot there is nothing older to fit on, so the
    configured params are used without a search (and `auto` keeps the blend). Ties keep the earlier
    candidate: the configured params first, and the GBT alone before the blend.

    The blend decision costs no fit of its own: a blended pipeline carries the GBT's score as
    `gbt_score`, so one fit per params yields both validation scores. With `search: []` and `auto`,
    the configured params still get that one validation fit, because the blend must earn its place.
    """
    start = time.perf_counter()
    # The GBT runs hundreds of small jobs, and every task would carry the feature pass's whole lineage
    # (task binaries over 1 MB). A local checkpoint cuts the lineage and one partition per core halves
    # the tasks: on the demo a fit took 10.3 s instead of 17.7 s (benchmarks/RESULTS.md). The price:
    # an executor lost during the fit fails this segment's training; rerunning the night repeats it.
    cores = train_df.sparkSession.sparkContext.defaultParallelism
    data = _prepared(train_df, feature_cols).coalesce(max(cores, 1)).localCheckpoint(eager=True)
    snapshots = sorted(as_utc(r[SNAPSHOT_COL]) for r in data.select(SNAPSHOT_COL).distinct().collect())
    if not snapshots:
        raise ValueError("training frame is empty")
    candidates = search_candidates(settings)
    balanced = settings.class_weight == "balanced"
    judge_blend = bool(blend_slugs) and settings.score_blend == "auto"
    scores: list[CandidateScore] = []
    validation_time = snapshots[-1] if len(snapshots) > 1 else None
    n_validation = 0
    chosen, blended = settings.gbt, bool(blend_slugs)
    if validation_time is not None and (len(candidates) > 1 or judge_blend):
        older, _ = with_class_weights(data.where(F.col(SNAPSHOT_COL) < F.lit(validation_time)), balanced)
        validation = data.where(F.col(SNAPSHOT_COL) == F.lit(validation_time)).persist()
        n_validation = validation.count()
        for params in candidates:
            pipeline = build_pipeline(feature_cols, params, settings.seed, blend_slugs, horizon_days,
                                      settings.trainer)
            scored = pipeline.fit(older).transform(validation)
            if judge_blend:
                scored = scored.persist()
                scores.append(CandidateScore(params, auc_pr(scored, GBT_SCORE), blended=False))
            scores.append(CandidateScore(params, auc_pr(scored), blended=bool(blend_slugs)))
            scored.unpersist()
            for s in scores[-2 if judge_blend else -1:]:
                log.info("candidate %s%s: validation AUC-PR %.4f", params, " + BG/NBD blend" if s.blended else "",
                         s.validation_auc_pr)
        validation.unpersist()
        best = max(scores, key=lambda s: s.validation_auc_pr)  # max keeps the first of ties
        chosen, blended = best.params, best.blended
    weighted, positive_weight = with_class_weights(data, balanced)
    model = build_pipeline(feature_cols, chosen, settings.seed, blend_slugs if blended else (),
                           horizon_days, settings.trainer).fit(weighted)
    n_train = data.count()
    return FitResult(
        model=model,
        params=chosen,
        candidates=tuple(scores),
        validation_snapshot=validation_time,
        n_train=n_train,
        n_validation=n_validation,
        positive_weight=positive_weight,
        fit_seconds=time.perf_counter() - start,
        blended=blended,
    )


def ensemble_stage(model: PipelineModel) -> Any:
    """The fitted tree ensemble of either trainer (model/trainers.py): what reasons and importances read."""
    for stage in model.stages:
        if is_ensemble(stage):
            return stage
    raise ValueError("pipeline model has no tree ensemble stage (Spark GBT or xgboost)")


def model_inputs(model: PipelineModel, feature_cols: list[str]) -> list[str]:
    """The GBT's input columns in vector order: the feature columns, then any columns a stage derived (BG/NBD)."""
    customer_base = [st for st in model.stages if isinstance(st, BgNbdModel)]
    with_horizon = bool(customer_base) and float(customer_base[0].getOrDefault("horizonDays")) > 0
    return [*feature_cols, *bgnbd_columns(base_slugs(feature_cols), with_horizon)]


def feature_importances(model: PipelineModel, feature_cols: list[str]) -> list[tuple[str, float]]:
    """(feature, importance) pairs over the GBT's inputs, most important first; importances sum to 1."""
    weights = ensemble_importances(ensemble_stage(model))
    names = model_inputs(model, feature_cols)
    return sorted(zip(names, weights, strict=True), key=lambda kv: (-kv[1], kv[0]))
