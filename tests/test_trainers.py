"""`training.trainer: xgboost` (issue 24): xgboost's Spark estimator behind the same pipeline, importances,
reasons and registry as Spark's GBT.

The xgboost reasons are checked against xgboost's own TreeSHAP (`Booster.predict(pred_contribs=True)`),
an implementation independent of this project's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xgboost
from pyspark.ml import PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from segments_lib.language.definitions import GbtParams
from segments_lib.model.pipeline import (
    FEATURES_VECTOR,
    RAW_SCORE,
    build_pipeline,
    build_regression_pipeline,
    ensemble_stage,
    feature_importances,
    with_class_weights,
)
from segments_lib.model.reasons import read_forest, shap_values, with_reasons
from segments_lib.model.trainers import colsample_fraction, is_xgboost_model, logistic_min_child_weight

A, B, CONST = "freq_7d__purchase_completed", "recency_days__add_to_cart", "tenure_days"
COLUMNS = [A, B, CONST]
NAMES = {"purchase_completed": "Purchase Completed", "add_to_cart": "Add to Cart"}
TINY = GbtParams(max_iter=8, max_depth=2, min_instances_per_node=1, subsampling_rate=1.0, step_size=0.5, max_bins=16)


@pytest.mark.parametrize(("subset", "inputs", "fraction"), [
    ("all", 172, 1.0),
    ("sqrt", 100, 0.1),  # 10 of 100
    ("onethird", 10, 0.4),  # ceil(10 / 3) = 4 of 10
    ("log2", 8, 0.375),  # 3 of 8
    ("0.25", 40, 0.25),  # a configured fraction passes through
])
def test_feature_subset_as_xgboost_colsample(subset: str, inputs: int, fraction: float) -> None:
    assert colsample_fraction(subset, inputs) == pytest.approx(fraction)


def test_min_rows_per_leaf_as_a_hessian_sum() -> None:
    # 50 rows at base rate 0.2, weight 1: 50 · 0.2 · 0.8 = 8.
    assert logistic_min_child_weight(50, 1.0, 0.2) == pytest.approx(8.0)
    # Balanced weights, 10 positives of weight 9 and 90 negatives of weight 1: mean weight 180/100 = 1.8,
    # weighted base rate 90/180 = 0.5, so 50 · 1.8 · 0.25 = 22.5.
    assert logistic_min_child_weight(50, 1.8, 0.5) == pytest.approx(22.5)


def _rows() -> list[tuple]:
    """Two interacting features (label = both high, or a very high) and a constant, 80 users."""
    rng = np.random.default_rng(11)
    rows = []
    for i in range(80):
        a, b = float(rng.integers(0, 6)), float(rng.integers(0, 5))
        rows.append((f"u{i:02d}", a, b, 40.0, float((a >= 2 and b >= 3) or a >= 5)))
    return rows


@pytest.fixture(scope="module")
def frame(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(_rows(), ["user_id", *COLUMNS, "label"])


@pytest.fixture(scope="module")
def fitted(frame: DataFrame) -> PipelineModel:
    weighted, _ = with_class_weights(frame, balanced=False)
    return build_pipeline(COLUMNS, TINY, seed=3, trainer="xgboost").fit(weighted)


def _vectors(model: PipelineModel, frame: DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(assembled input vectors, the pipeline's raw_score) per row, ordered by user_id."""
    out = model.transform(frame).select("user_id", vector_to_array(FEATURES_VECTOR).alias("x"), RAW_SCORE
                                        ).orderBy("user_id").collect()
    return np.array([r.x for r in out]), np.array([r[RAW_SCORE] for r in out])


def test_the_pipeline_scores_with_the_booster_it_fitted(fitted: PipelineModel, frame: DataFrame) -> None:
    stage = ensemble_stage(fitted)
    assert is_xgboost_model(stage)
    labels = np.array([r[-1] for r in sorted(_rows())])
    positives = labels.sum()
    assert positives == 34  # by the rule above on this seed: the base rate is 34 / 80 = 0.425
    # One row per leaf at base rate 0.425, weight 1: min_child_weight = 1 · 0.425 · 0.575 = 0.244375.
    assert stage.getOrDefault("min_child_weight") == pytest.approx(0.244375)
    assert stage.getOrDefault("n_estimators") == 8 and stage.getOrDefault("learning_rate") == 0.5
    x, raw_score = _vectors(fitted, frame)
    booster_says = stage.get_booster().predict(xgboost.DMatrix(x))
    np.testing.assert_allclose(raw_score, booster_says, rtol=1e-6)
    # A deterministic rule of two features: eight depth-2 trees rank every buyer above every other user.
    assert raw_score[labels == 1].min() > raw_score[labels == 0].max()


def test_importances_cover_the_inputs_and_skip_the_constant(fitted: PipelineModel) -> None:
    importances = dict(feature_importances(fitted, COLUMNS))
    assert set(importances) == set(COLUMNS)
    assert sum(importances.values()) == pytest.approx(1.0)
    assert importances[CONST] == 0.0  # never split on: it cannot separate anyone
    assert importances[A] > importances[B] > 0.0


def test_reasons_are_xgboost_own_treeshap(fitted: PipelineModel, frame: DataFrame) -> None:
    stage = ensemble_stage(fitted)
    x, _ = _vectors(fitted, frame)
    forest = read_forest(stage)
    phi = shap_values(forest, x)
    booster = stage.get_booster()
    contributions = booster.predict(xgboost.DMatrix(x), pred_contribs=True)  # inputs, then the bias
    np.testing.assert_allclose(phi, contributions[:, :-1], atol=1e-5)
    margin = booster.predict(xgboost.DMatrix(x), output_margin=True)
    # Additivity: the values plus the bias (xgboost's base margin + the forest's expected margin) are the margin.
    np.testing.assert_allclose(phi.sum(axis=1) + contributions[:, -1], margin, atol=1e-5)
    assert np.all(phi[:, 2] == 0.0)
    # The nightly step on the same model. u09 (5 purchases, cart 3 days ago) is a buyer on both counts, so
    # both features push it up, in the order of their values; u00 (0 and 0) is pushed up by neither.
    members = frame.drop("label").where(F.col("user_id").isin("u00", "u09"))
    reasons = {r.user_id: r for r in with_reasons(members, fitted, COLUMNS, NAMES.values()).collect()}
    by_value = sorted([(phi[9, 0], "5 Purchase Completed events in the last 7 days"),
                       (phi[9, 1], "last Add to Cart 3 days ago")], reverse=True)
    assert by_value[1][0] > 0
    assert (reasons["u09"].reason_1, reasons["u09"].reason_2) == (by_value[0][1], by_value[1][1])
    assert reasons["u09"].reason_3 is None  # the constant never pushes
    assert reasons["u00"].reason_1 is None


def test_saved_pipeline_loads_and_scores_the_same(fitted: PipelineModel, frame: DataFrame, tmp_path: Path) -> None:
    fitted.write().save(str(tmp_path / "model"))
    again = PipelineModel.load(str(tmp_path / "model"))
    np.testing.assert_array_equal(_vectors(again, frame)[1], _vectors(fitted, frame)[1])


def test_regression_pipeline_predicts_a_continuous_target(spark: SparkSession) -> None:
    # y = 0.1 · a exactly; eight depth-2 trees at rate 0.5 recover its order over the six values of a.
    rows = [(f"u{i:02d}", float(i % 6), float(i % 5), 40.0, 0.1 * (i % 6)) for i in range(60)]
    data = spark.createDataFrame(rows, ["user_id", *COLUMNS, "label"]).withColumn("weight", F.lit(1.0))
    model = build_regression_pipeline(COLUMNS, TINY, seed=3, trainer="xgboost").fit(data)
    assert is_xgboost_model(ensemble_stage(model))
    by_a = {r[A]: r[RAW_SCORE] for r in model.transform(data).select(A, RAW_SCORE).distinct().collect()}
    assert sorted(by_a, key=by_a.get) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert by_a[5.0] == pytest.approx(0.5, abs=0.05) and by_a[0.0] == pytest.approx(0.0, abs=0.05)
