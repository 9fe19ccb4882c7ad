"""The tree ensemble inside a segment's pipeline (`training.trainer`): Spark ML's GBT or xgboost on Spark.

Both read the `features` vector, `label` and `weight` and write a `probability` vector (classifiers) or
`raw_score` (regressors), so the stages around them (null filling, BG/NBD, the blend, calibration),
the thresholds, reasons and MLflow logging do not depend on which one trained.

`xgboost` is xgboost's own PySpark estimator (`xgboost.spark`): the rows go to one barrier task per
core of the session and the trees are grown with the `hist` method and an allreduce between the
tasks, so a fit is a handful of Spark jobs where Spark's GBT runs several per tree (benchmarks/RESULTS.md,
issue 24). The `training.gbt` settings translate as:

| `training.gbt`           | xgboost                                                              |
|--------------------------|----------------------------------------------------------------------|
| `max_iter`               | `n_estimators`                                                       |
| `max_depth`              | `max_depth`                                                          |
| `step_size`              | `learning_rate`                                                      |
| `subsampling_rate`       | `subsample`                                                          |
| `max_bins`               | `max_bin`                                                            |
| `feature_subset`         | `colsample_bynode`: the fraction of the vector's inputs Spark would draw |
| `min_instances_per_node` | `min_child_weight`, see below                                        |
| `seed`                   | `random_state`                                                       |

xgboost bounds a leaf's sum of loss hessians, not its row count. Under the logistic loss a row of weight
w at predicted probability p adds w·p(1−p), so "N rows" is N · mean(w) · b(1−b) at the training rows'
weighted base rate b, where xgboost's first tree starts; under squared loss a row adds w, so N · mean(w).
The estimators below measure b and mean(w) on the rows they are given and fit xgboost's own estimator,
which is what the fitted pipeline holds: a saved model loads without this module.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pyspark.ml import Estimator, Model
from pyspark.ml.classification import GBTClassificationModel, GBTClassifier
from pyspark.ml.regression import GBTRegressionModel, GBTRegressor
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from xgboost.spark import SparkXGBClassifier, SparkXGBRegressor

from segments_lib.language.definitions import TRAINERS, GbtParams

XGBOOST_MODULE = "xgboost.spark"


def classifier(trainer: str, params: GbtParams, seed: int, features_col: str, label_col: str, weight_col: str,
               ) -> Estimator:
    """The classifier stage `trainer` names: it writes a `probability` vector, [P(0), P(1)]."""
    if trainer == "gbt":
        return GBTClassifier(featuresCol=features_col, labelCol=label_col, weightCol=weight_col, seed=seed,
                             **params.spark_params())
    return XGBoostClassifier(params, seed, features_col, label_col, weight_col)


def regressor(trainer: str, params: GbtParams, seed: int, features_col: str, label_col: str, weight_col: str,
              prediction_col: str) -> Estimator:
    """The squared-loss regressor stage `trainer` names, writing its prediction to `prediction_col`."""
    if trainer == "gbt":
        return GBTRegressor(featuresCol=features_col, labelCol=label_col, weightCol=weight_col, seed=seed,
                            predictionCol=prediction_col, **params.spark_params())
    return XGBoostRegressor(params, seed, features_col, label_col, weight_col, prediction_col)


def check_trainer(trainer: str) -> None:
    if trainer not in TRAINERS:
        raise ValueError(f"training.trainer must be one of {', '.join(TRAINERS)}, found {trainer!r}")


def is_xgboost_model(stage: Any) -> bool:
    return type(stage).__module__.startswith(XGBOOST_MODULE) and isinstance(stage, Model)


def is_ensemble(stage: Any) -> bool:
    """A fitted tree ensemble of either trainer (classifier or regressor)."""
    return isinstance(stage, (GBTClassificationModel, GBTRegressionModel)) or is_xgboost_model(stage)


def ensemble_input_count(stage: Any) -> int:
    """How many inputs the fitted ensemble's vector has."""
    if is_xgboost_model(stage):
        return int(stage.get_booster().num_features())
    return int(stage.numFeatures)


def ensemble_importances(stage: Any) -> list[float]:
    """Per vector input, its share of the ensemble's total split gain (summing to 1; all 0 without a split).

    Spark's `featureImportances` normalises each tree's gains before averaging; xgboost's `total_gain`
    sums them over trees. Both rank the inputs by how much loss their splits removed.
    """
    if not is_xgboost_model(stage):
        return [float(w) for w in stage.featureImportances.toArray()]
    booster = stage.get_booster()
    gains = [0.0] * int(booster.num_features())
    for name, gain in booster.get_score(importance_type="total_gain").items():
        gains[_input_index(name, booster.feature_names)] = float(gain)
    total = sum(gains)
    return [g / total if total > 0 else 0.0 for g in gains]


def _input_index(name: str, feature_names: list[str] | None) -> int:
    """xgboost keys an input by its feature name when the booster has names, else 'f<index>'."""
    if feature_names:
        return feature_names.index(name)
    match = re.fullmatch(r"f(\d+)", name)
    if match is None:
        raise ValueError(f"xgboost input name {name!r} is neither a feature name nor f<index>")
    return int(match.group(1))


def colsample_fraction(feature_subset: str, n_inputs: int) -> float:
    """Spark's featureSubsetStrategy as the fraction of `n_inputs` a node considers (xgboost's colsample_bynode)."""
    if n_inputs < 1:
        raise ValueError("a vector of no inputs has no subset")
    counts = {"all": n_inputs, "onethird": math.ceil(n_inputs / 3), "sqrt": math.ceil(math.sqrt(n_inputs)),
              "log2": max(1, math.ceil(math.log2(n_inputs)))}
    if feature_subset in counts:
        return counts[feature_subset] / n_inputs
    return float(feature_subset)


def logistic_min_child_weight(min_rows: int, mean_weight: float, base_rate: float) -> float:
    """The hessian sum of `min_rows` rows of mean weight `mean_weight` at the logistic loss's start, p = b."""
    return min_rows * mean_weight * base_rate * (1.0 - base_rate)


def _vector_size(dataset: DataFrame, features_col: str) -> int:
    size = dataset.schema[features_col].metadata.get("ml_attr", {}).get("num_attrs")
    if size is None:  # a vector column without attribute metadata: read one row
        size = len(dataset.select(features_col).first()[0])
    return int(size)


class _XGBoostEstimator(Estimator):
    """Fits xgboost's Spark estimator with `training.gbt` translated; returns xgboost's own model."""

    def __init__(self, params: GbtParams, seed: int, features_col: str, label_col: str, weight_col: str) -> None:
        super().__init__()
        self.gbt_params, self.seed_value = params, seed
        self.features_col, self.label_col, self.weight_col = features_col, label_col, weight_col

    def _xgboost_kwargs(self, dataset: DataFrame, min_child_weight: float) -> dict[str, Any]:
        p = self.gbt_params
        return {
            "features_col": self.features_col, "label_col": self.label_col, "weight_col": self.weight_col,
            "num_workers": max(1, dataset.sparkSession.sparkContext.defaultParallelism),
            "tree_method": "hist", "n_estimators": p.max_iter, "max_depth": p.max_depth,
            "learning_rate": p.step_size, "subsample": p.subsampling_rate, "max_bin": p.max_bins,
            "colsample_bynode": colsample_fraction(p.feature_subset, _vector_size(dataset, self.features_col)),
            "min_child_weight": min_child_weight, "random_state": self.seed_value,
            "verbose": False,  # the training loss per round, printed by every barrier task
        }

    def _weights(self, dataset: DataFrame) -> tuple[float, float]:
        """(mean weight, weighted mean label) of the rows."""
        w, y = F.col(self.weight_col).cast("double"), F.col(self.label_col).cast("double")
        row = dataset.agg(F.count(F.lit(1)).alias("n"), F.sum(w).alias("w"), F.sum(w * y).alias("wy")).first()
        if not row["n"] or not row["w"]:
            raise ValueError("xgboost needs training rows with positive total weight")
        return float(row["w"]) / int(row["n"]), float(row["wy"]) / float(row["w"])


class XGBoostClassifier(_XGBoostEstimator):
    def _fit(self, dataset: DataFrame) -> Model:
        mean_weight, base_rate = self._weights(dataset)
        min_child_weight = logistic_min_child_weight(self.gbt_params.min_instances_per_node, mean_weight, base_rate)
        return SparkXGBClassifier(**self._xgboost_kwargs(dataset, min_child_weight)).fit(dataset)


class XGBoostRegressor(_XGBoostEstimator):
    def __init__(self, params: GbtParams, seed: int, features_col: str, label_col: str, weight_col: str,
                 prediction_col: str) -> None:
        super().__init__(params, seed, features_col, label_col, weight_col)
        self.prediction_col = prediction_col

    def _fit(self, dataset: DataFrame) -> Model:
        mean_weight, _ = self._weights(dataset)
        kwargs = self._xgboost_kwargs(dataset, self.gbt_params.min_instances_per_node * mean_weight)
        return SparkXGBRegressor(**kwargs, prediction_col=self.prediction_col).fit(dataset)
