"""The segment model: a Spark ML pipeline around a GBTClassifier, chosen by a time-based search.

Pipeline stages, in order:

1. `SQLTransformer` filling "never happened" nulls. The features contract makes every null a
   "never": recency and gap features of an event the user never did. Trees split on thresholds, so
   a sentinel far above any real value (`NEVER_SENTINEL`) makes "never" sort as "longer ago than
   anything observed", which is what it means; counts are already 0 and pass through unchanged.
   No null reaches the assembler.
2. `VectorAssembler` over the filled columns.
3. `GBTClassifier(weightCol="weight", seed=seed)`.
4. `PositiveProbability`: `raw_score = vector_to_array(probability)[1]` (Spark SQL has no
   `vector_to_array`, so a SQLTransformer cannot do it; this stage wraps the built-in column function).

When the features carry the customer-base family (`count_all__e`, `span_days__e`, `first_days__e`,
see features/spec.py), a `BgNbd` stage runs before the assembler: it fits BG/NBD (model/bgnbd.py) on
the training rows it is given and adds, per event, P(alive) and the expected rate
`P(alive) · (r + x) / (α + T)` (purchases per day now) as two more inputs. Trees cannot build those
ratios and powers from x, t_x and T themselves, and the fit sees only the rows the pipeline trains on.

Class imbalance: `with_class_weights` gives positives the weight n_neg / n_pos and negatives 1, so
both classes carry equal total weight. Scores are therefore not base-rate probabilities; the
calibration step (issue 7) maps them back.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model, Pipeline, PipelineModel, Transformer
from pyspark.ml.classification import GBTClassificationModel, GBTClassifier
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


def bgnbd_columns(slugs: list[str]) -> list[str]:
    return [name for slug in slugs for name in (f"bgnbd_p_alive__{slug}", f"bgnbd_rate__{slug}")]


class _HasSlugs(Params):
    slugs = Param(Params._dummy(), "slugs", "event slugs with customer-base columns", TypeConverters.toListString)
    fitted = Param(Params._dummy(), "fitted", "JSON {slug: {r, alpha, a, b}}", TypeConverters.toString)


class BgNbdModel(Model, _HasSlugs, DefaultParamsReadable, DefaultParamsWritable):
    """Adds `bgnbd_p_alive__<slug>` and `bgnbd_rate__<slug>` from fitted BG/NBD parameters (built-ins only)."""

    @keyword_only
    def __init__(self, slugs: list[str] | None = None, fitted: str = "{}") -> None:
        super().__init__()
        self._set(**self._input_kwargs)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        fitted = json.loads(self.getOrDefault(self.fitted))
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
        return dataset.select("*", *added)


class BgNbd(Estimator, _HasSlugs):
    """Fits one BG/NBD per event slug on the rows it is given (every snapshot's customers pooled)."""

    @keyword_only
    def __init__(self, slugs: list[str] | None = None) -> None:
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
        return BgNbdModel(slugs=self.getOrDefault(self.slugs), fitted=json.dumps(fitted))


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def never_fill_statement(feature_cols: list[str]) -> str:
    filled = ", ".join(
        f"coalesce(CAST({_quoted(c)} AS DOUBLE), {NEVER_SENTINEL!r}) AS {_quoted(c + FILLED_SUFFIX)}"
        for c in feature_cols
    )
    return f"SELECT *, {filled} FROM __THIS__"


def build_pipeline(feature_cols: list[str], params: GbtParams, seed: int) -> Pipeline:
    if not feature_cols:
        raise ValueError("build_pipeline needs at least one feature column")
    duplicates = sorted({c for c in feature_cols if feature_cols.count(c) > 1})
    if duplicates:
        raise ValueError(f"feature columns listed twice: {', '.join(duplicates)}")
    gbt = GBTClassifier(featuresCol=FEATURES_VECTOR, labelCol=LABEL_COL, weightCol=WEIGHT_COL, seed=seed,
                        **params.spark_params())
    slugs = base_slugs(feature_cols)
    customer_base = [BgNbd(slugs=slugs)] if slugs else []
    return Pipeline(stages=[
        SQLTransformer(statement=never_fill_statement(feature_cols)),
        *customer_base,
        VectorAssembler(inputCols=[c + FILLED_SUFFIX for c in feature_cols] + bgnbd_columns(slugs),
                        outputCol=FEATURES_VECTOR),
        gbt,
        PositiveProbability(inputCol="probability", outputCol=RAW_SCORE),
    ])


def with_class_weights(df: DataFrame) -> tuple[DataFrame, float]:
    """`df` with a `weight` column (positives n_neg/n_pos, negatives 1) and the positive weight."""
    counts = df.agg(
        F.sum(F.when(F.col(LABEL_COL) == 1, 1).otherwise(0)).alias("positives"),
        F.sum(F.when(F.col(LABEL_COL) == 0, 1).otherwise(0)).alias("negatives"),
    ).first()
    positives, negatives = int(counts["positives"] or 0), int(counts["negatives"] or 0)
    if positives == 0 or negatives == 0:
        raise ValueError(f"training rows need both classes, found {positives} positives and {negatives} negatives")
    positive_weight = negatives / positives
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


def auc_pr(scored: DataFrame) -> float:
    evaluator = BinaryClassificationEvaluator(
        rawPredictionCol=RAW_SCORE, labelCol=LABEL_COL, metricName="areaUnderPR"
    )
    return float(evaluator.evaluate(scored))


def _prepared(df: DataFrame, feature_cols: list[str]) -> DataFrame:
    missing = [c for c in (SNAPSHOT_COL, LABEL_COL, *feature_cols) if c not in df.columns]
    if missing:
        raise ValueError(f"training frame lacks columns: {', '.join(missing)}")
    return df.select(SNAPSHOT_COL, *feature_cols, F.col(LABEL_COL).cast("double").alias(LABEL_COL))


def fit_with_time_validation(train_df: DataFrame, feature_cols: list[str], settings: TrainingSettings) -> FitResult:
    """Pick GBT params on the newest training snapshot (fit on the older ones), then refit on all.

    Never a random split: the validation fold is later in time than everything it was fit on, as the
    holdout will be. With a single training snapshot there is nothing older to fit on, so the
    configured params are used without a search. Ties keep the earlier candidate (the configured one first).
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
    scores: list[CandidateScore] = []
    validation_time = snapshots[-1] if len(snapshots) > 1 else None
    n_validation = 0
    chosen = settings.gbt
    if validation_time is not None and len(candidates) > 1:
        older, _ = with_class_weights(data.where(F.col(SNAPSHOT_COL) < F.lit(validation_time)))
        validation = data.where(F.col(SNAPSHOT_COL) == F.lit(validation_time)).persist()
        n_validation = validation.count()
        for params in candidates:
            fitted = build_pipeline(feature_cols, params, settings.seed).fit(older)
            score = auc_pr(fitted.transform(validation))
            log.info("candidate %s: validation AUC-PR %.4f", params, score)
            scores.append(CandidateScore(params, score))
        validation.unpersist()
        chosen = max(scores, key=lambda s: s.validation_auc_pr).params  # max keeps the first of ties
    weighted, positive_weight = with_class_weights(data)
    model = build_pipeline(feature_cols, chosen, settings.seed).fit(weighted)
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
    )


def gbt_stage(model: PipelineModel) -> GBTClassificationModel:
    for stage in model.stages:
        if isinstance(stage, GBTClassificationModel):
            return stage
    raise ValueError("pipeline model has no GBTClassificationModel stage")


def model_inputs(model: PipelineModel, feature_cols: list[str]) -> list[str]:
    """The GBT's input columns in vector order: the feature columns, then any columns a stage derived (BG/NBD)."""
    return [*feature_cols, *bgnbd_columns(base_slugs(feature_cols))]


def feature_importances(model: PipelineModel, feature_cols: list[str]) -> list[tuple[str, float]]:
    """(feature, importance) pairs over the GBT's inputs, most important first; importances sum to 1."""
    weights = gbt_stage(model).featureImportances.toArray()
    names = model_inputs(model, feature_cols)
    return sorted(zip(names, (float(w) for w in weights), strict=True), key=lambda kv: (-kv[1], kv[0]))
