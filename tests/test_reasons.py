"""Reasons per member (issue 21 item 5): TreeSHAP on the Spark GBT, phrases, members only, the nightly table."""

from __future__ import annotations

import itertools
import logging
import math
from datetime import date

import numpy as np
import pytest
from pyspark.ml import PipelineModel
from pyspark.ml.feature import SQLTransformer
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from segments_lib.job.scoring import LevelThreshold, ScoringContext, membership_rows
from segments_lib.language.definitions import GbtParams
from segments_lib.model.pipeline import (
    FEATURES_VECTOR,
    NEVER_SENTINEL,
    build_pipeline,
    ensemble_stage,
    with_class_weights,
)
from segments_lib.model.reasons import phrase, read_forest, shap_values, with_reasons
from segments_lib.store import tables
from tests.conftest import SHARED_WORKSPACE_GROUP

pytestmark = SHARED_WORKSPACE_GROUP  # built once, on one worker (tests/conftest.py)

FREQ, RECENCY, CONST = "freq_7d__purchase_completed", "recency_days__add_to_cart", "tenure_days"
NAMES = {"purchase_completed": "Purchase Completed", "add_to_cart": "Add to Cart"}
TINY = GbtParams(max_iter=5, max_depth=2, min_instances_per_node=1, subsampling_rate=1.0, step_size=0.5)


@pytest.mark.parametrize(("column", "value", "expected"), [
    (FREQ, 7.0, "7 Purchase Completed events in the last 7 days"),
    ("freq_28d__purchase_completed", 1.0, "1 Purchase Completed event in the last 28 days"),
    (RECENCY, 2.0, "last Add to Cart 2 days ago"),
    (RECENCY, 0.25, "last Add to Cart 6 hours ago"),
    (RECENCY, None, "never did Add to Cart"),
    (RECENCY, NEVER_SENTINEL, "never did Add to Cart"),  # the pipeline's fill for "never happened"
    ("gap_mean_h__add_to_cart", 36.0, "average time between Add to Cart events: 36 hours"),
    ("active_days_28d", 4.0, "active on 4 of the last 28 days"),
    ("distinct_events_28d", 3.0, "3 different event types in the last 28 days"),
    (CONST, 40.0, "first seen 40 days ago"),
    ("count_all__purchase_completed", 12.0, "12 Purchase Completed events in all history"),
    ("first_days__purchase_completed", 90.0, "first Purchase Completed 90 days ago"),
    ("rate_all__purchase_completed", 0.1, "0.7 Purchase Completed per week since the first one"),
    ("silence_to_gap__purchase_completed", 0.5, "silent for 0.5 times the usual gap between Purchase Completed events"),
    ("value_sum_28d__purchase_completed", 250.0, "Purchase Completed value of 250 in the last 28 days"),
    ("pair_unfollowed_1d__add_to_cart__purchase_completed", 2.0,
     "2 Add to Cart not followed by Purchase Completed within 1 day"),
    ("pair_mean_h__add_to_cart__purchase_completed", 3.0,
     "on average 3 hours from Add to Cart to the next Purchase Completed"),
    # 0.31 a week is 0.31 / 7 a day: BG/NBD's rate is per day (alpha and the age are in days).
    ("bgnbd_rate__purchase_completed", 0.31 / 7, "BG/NBD: 0.31 expected Purchase Completed per week"),
    ("bgnbd_p_alive__purchase_completed", 0.83, "BG/NBD: 83% chance of still being an active Purchase Completed "
     "customer"),
    ("bgnbd_p_any__purchase_completed", 0.4, "BG/NBD: 40% chance of Purchase Completed within the prediction window"),
    ("freq_7d__unknown_event", 2.0, "2 unknown event events in the last 7 days"),  # no display name: the slug
    ("mystery_feature", 1.5, "mystery_feature = 1.5"),
])
def test_phrase(column: str, value: float | None, expected: str) -> None:
    assert phrase(column, value, NAMES) == expected


def _fit(spark: SparkSession, rows: list[tuple], columns: list[str]) -> PipelineModel:
    frame = spark.createDataFrame(rows, ["user_id", *columns, "label"])
    weighted, _ = with_class_weights(frame, balanced=False)
    return build_pipeline(columns, TINY, seed=3).fit(weighted)


def _margins(model: PipelineModel, frame: DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(assembled vectors, Spark's own margin rawPrediction[1]) per row, ordered by user_id."""
    out = model.transform(frame).select(
        "user_id", vector_to_array(FEATURES_VECTOR).alias("x"), vector_to_array("rawPrediction")[1].alias("margin")
    ).orderBy("user_id").collect()
    return np.array([r.x for r in out]), np.array([r.margin for r in out])


@pytest.fixture(scope="module")
def one_informative(spark: SparkSession) -> tuple[PipelineModel, DataFrame]:
    """Label = 3+ purchases in 7d; recency and tenure constant, so no tree splits on them."""
    rows = [(f"u{i:02d}", float(i % 6), 5.0, 40.0, float(i % 6 >= 3)) for i in range(36)]
    model = _fit(spark, rows, [FREQ, RECENCY, CONST])
    return model, spark.createDataFrame([r[:4] for r in rows], ["user_id", FREQ, RECENCY, CONST])


def test_one_informative_feature_is_every_reason(one_informative) -> None:
    model, frame = one_informative
    x, margin = _margins(model, frame)
    forest = read_forest(ensemble_stage(model))
    phi = shap_values(forest, x)
    # Constant features are never split on: all of the margin's distance from its mean is the frequency's.
    assert np.all(phi[:, 1:] == 0.0)
    np.testing.assert_allclose(phi[:, 0], margin - forest.expected_margin, atol=1e-9)
    # Balanced classes: 18 buyers and 18 not, so the mean margin sits between the two groups' margins.
    assert np.all((phi[:, 0] > 0) == (x[:, 0] >= 3))
    reasons = {r.user_id: r for r in with_reasons(frame, model, [FREQ, RECENCY, CONST], NAMES.values()).collect()}
    assert reasons["u05"].reason_1 == "5 Purchase Completed events in the last 7 days"
    assert reasons["u03"].reason_1 == "3 Purchase Completed events in the last 7 days"
    assert reasons["u05"].reason_2 is None and reasons["u05"].reason_3 is None  # only one feature pushes up
    assert reasons["u01"].reason_1 is None  # its one feature pushes the score down
    assert reasons["u05"][FREQ] == 5.0  # the input columns pass through


def _path_expectation(node, x: np.ndarray, known: set[int]) -> float:
    """TreeSHAP's E[f(x) | x_S] by the paper's Algorithm 1, on Spark's own nodes: known features follow x,
    unknown ones average both children by their training covers."""
    if node.getClass().getSimpleName() == "LeafNode":
        return float(node.prediction())
    split = node.split()
    feature = int(split.featureIndex())
    left, right = node.leftChild(), node.rightChild()
    if feature in known:
        return _path_expectation(left if x[feature] <= split.threshold() else right, x, known)
    n_left, n_right = float(left.impurityStats().count()), float(right.impurityStats().count())
    return (n_left * _path_expectation(left, x, known) + n_right * _path_expectation(right, x, known)) / (
        n_left + n_right)


def test_shap_matches_brute_force_shapley_and_spark_margin(spark: SparkSession) -> None:
    # Two interacting features (label = both high) plus noise, so paths split on several features.
    rng = np.random.default_rng(5)
    rows = []
    for i in range(60):
        a, b, c = float(rng.integers(0, 5)), float(rng.integers(0, 5)), float(rng.integers(0, 3))
        rows.append((f"u{i:02d}", a, b, c, float((a >= 2 and b >= 3) or (c == 2 and a >= 4))))
    columns = [FREQ, RECENCY, CONST]
    model = _fit(spark, rows, columns)
    x, margin = _margins(model, spark.createDataFrame([r[:4] for r in rows], ["user_id", *columns]))
    gbt = ensemble_stage(model)
    forest = read_forest(gbt)
    phi = shap_values(forest, x)
    assert (np.abs(phi) > 1e-6).any(axis=0).sum() >= 2  # the trees really split on several features
    # Additivity against Spark's margin: SHAP values + expected margin = rawPrediction[1].
    np.testing.assert_allclose(phi.sum(axis=1) + forest.expected_margin, margin, atol=1e-9)
    # The definition, subset by subset, on a few rows: Σ_S |S|!(m−|S|−1)!/m! (v(S ∪ i) − v(S)).
    roots = [(t._java_obj.rootNode(), w) for t, w in zip(gbt.trees, gbt.treeWeights, strict=True)]
    m = x.shape[1]
    for r in range(4):
        def value(known: set[int], row: int = r) -> float:
            return sum(w * _path_expectation(root, x[row], known) for root, w in roots)
        for i in range(m):
            others = [j for j in range(m) if j != i]
            expected = sum(
                math.factorial(len(s)) * math.factorial(m - len(s) - 1) / math.factorial(m)
                * (value({*s, i}) - value(set(s)))
                for k in range(m) for s in itertools.combinations(others, k)
            )
            assert phi[r, i] == pytest.approx(expected, abs=1e-9)


def test_a_model_without_gbt_gets_null_reasons(spark: SparkSession, caplog: pytest.LogCaptureFixture) -> None:
    frame = spark.createDataFrame([("u1", 2.0)], ["user_id", FREQ])
    no_gbt = PipelineModel(stages=[SQLTransformer(statement="SELECT * FROM __THIS__")])
    with caplog.at_level(logging.WARNING, logger="segments_lib.model.reasons"):
        row = with_reasons(frame, no_gbt, [FREQ]).first()
    assert (row.reason_1, row.reason_2, row.reason_3) == (None, None, None)
    assert "no tree ensemble to explain" in caplog.text


def test_membership_keeps_reasons_of_members_only(spark: SparkSession) -> None:
    scored = spark.createDataFrame(
        [("in", 0.8, "a", "b", None), ("out", 0.2, "c", None, None)],
        "user_id string, score double, reason_1 string, reason_2 string, reason_3 string")
    ctx = ScoringContext(segment="s", run_date=date(2026, 6, 1), segment_level="medium",
                         levels=(LevelThreshold("medium", 0.5, 0.5),), model_name="m", model_version=1,
                         mlflow_run_id="r", control_share=0.0)
    rows = {r.user_id: r for r in membership_rows(scored, ctx).collect()}
    assert (rows["in"].reason_1, rows["in"].reason_2, rows["in"].reason_3) == ("a", "b", None)
    assert (rows["out"].reason_1, rows["out"].reason_2) == (None, None)
    # Without reason columns (a night whose reasons failed) every row's reasons are null.
    plain = membership_rows(scored.select("user_id", "score"), ctx).where(F.col("is_member")).first()
    assert plain.reason_1 is None


def test_nightly_members_have_reasons(spark: SparkSession, trained_workspace) -> None:
    membership = tables.read_output(spark, trained_workspace, tables.SEGMENT_MEMBERSHIP)
    counts = membership.groupBy("is_member").agg(
        F.count(F.lit(1)).alias("rows"), F.count("reason_1").alias("with_reason")).collect()
    by_flag = {r.is_member: (r.rows, r.with_reason) for r in counts}
    members, explained = by_flag[True]
    assert members > 0 and explained == members
    assert by_flag[False][1] == 0
