"""Model pipeline: "never" imputation, class weights, time-based search, determinism, ranking."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from pyspark.ml import PipelineModel
from pyspark.ml.feature import SQLTransformer
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType, TimestampType

from segments_lib.language.definitions import GbtParams, TrainingSettings
from segments_lib.model.pipeline import (
    NEVER_SENTINEL,
    build_pipeline,
    default_search_grid,
    feature_importances,
    fit_with_time_validation,
    never_fill_statement,
    with_class_weights,
)

TINY_GBT = GbtParams(max_iter=5, max_depth=2, step_size=0.3, subsampling_rate=1.0, min_instances_per_node=1,
                     max_bins=8)
FEATURES = ["days_since_purchase", "purchases_28d", "constant_one"]
SCHEMA = StructType([
    StructField("snapshot_time", TimestampType()),
    StructField("user_id", StringType()),
    StructField("days_since_purchase", DoubleType()),
    StructField("purchases_28d", DoubleType()),
    StructField("constant_one", DoubleType()),
    StructField("label", IntegerType()),
])
SNAPSHOTS = [datetime(2026, 5, d, tzinfo=timezone.utc) for d in (4, 11, 18)]


def obvious_frame(spark: SparkSession) -> DataFrame:
    """Per snapshot: 4 recent buyers (label 1) and 6 users who never bought (null recency, label 0)."""
    rows = []
    for t in SNAPSHOTS:
        rows += [(t, f"buyer{i}", float(i), 2.0, 1.0, 1) for i in range(1, 5)]
        rows += [(t, f"never{i}", None, 0.0, 1.0, 0) for i in range(6)]
    return spark.createDataFrame(rows, SCHEMA)


def test_never_fill_replaces_only_nulls_with_the_sentinel(spark: SparkSession) -> None:
    df = spark.createDataFrame([("a", None, 0), ("b", 3.5, 2)], "user_id string, days double, n int")
    filled = SQLTransformer(statement=never_fill_statement(["days", "n"])).transform(df)
    got = sorted((r.user_id, r["days__filled"], r["n__filled"]) for r in filled.collect())
    assert got == [("a", NEVER_SENTINEL, 0.0), ("b", 3.5, 2.0)]


def test_class_weights_balance_the_classes(spark: SparkSession) -> None:
    df = spark.createDataFrame([("p", 1), ("n1", 0), ("n2", 0), ("n3", 0)], "user_id string, label int")
    weighted, positive_weight = with_class_weights(df)
    assert positive_weight == 3.0
    assert sorted((r.user_id, r.weight) for r in weighted.collect()) == [
        ("n1", 1.0), ("n2", 1.0), ("n3", 1.0), ("p", 3.0)]


def test_unbalanced_weights_are_all_one_and_the_setting_reaches_the_fit(spark: SparkSession) -> None:
    df = spark.createDataFrame([("p", 1), ("n1", 0), ("n2", 0), ("n3", 0)], "user_id string, label int")
    weighted, positive_weight = with_class_weights(df, balanced=False)
    assert positive_weight == 1.0
    assert {r.weight for r in weighted.collect()} == {1.0}
    balanced = TrainingSettings(gbt=TINY_GBT, search=(), class_weight="balanced")
    assert fit_with_time_validation(obvious_frame(spark), FEATURES, balanced).positive_weight == 1.5  # 18 / 12


def test_class_weights_refuse_a_single_class(spark: SparkSession) -> None:
    df = spark.createDataFrame([("a", 0), ("b", 0)], "user_id string, label int")
    with pytest.raises(ValueError, match="0 positives and 2 negatives"):
        with_class_weights(df)


def test_pipeline_rejects_duplicate_or_missing_features() -> None:
    with pytest.raises(ValueError, match="listed twice: a"):
        build_pipeline(["a", "b", "a"], TINY_GBT, seed=1)
    with pytest.raises(ValueError, match="at least one feature"):
        build_pipeline([], TINY_GBT, seed=1)


def test_default_grid_is_configured_params_then_shallower_and_deeper() -> None:
    grid = default_search_grid(GbtParams(max_depth=5))
    assert [p.max_depth for p in grid] == [5, 3, 7]
    assert [p.max_depth for p in default_search_grid(GbtParams(max_depth=2))] == [2, 4]  # depth floor 2, deduped


def test_recent_buyers_rank_above_never_buyers_and_search_validates_on_newest_snapshot(spark: SparkSession) -> None:
    settings = TrainingSettings(gbt=TINY_GBT, seed=7)
    result = fit_with_time_validation(obvious_frame(spark), FEATURES, settings)

    assert result.validation_snapshot == SNAPSHOTS[-1]
    assert result.n_validation == 10 and result.n_train == 30
    assert len(result.candidates) == 2  # depth 2 and 4 (floor keeps 2)
    assert all(c.validation_auc_pr == pytest.approx(1.0) for c in result.candidates)
    assert result.params == TINY_GBT  # a tie keeps the configured params
    assert result.positive_weight == 1.0  # class_weight "none" (the default): every row weighs 1

    probe = spark.createDataFrame(
        [(SNAPSHOTS[-1], "recent", 2.0, 1.0, 1.0, 0), (SNAPSHOTS[-1], "never", None, 0.0, 1.0, 0)], SCHEMA)
    scores = {r.user_id: r.raw_score for r in result.model.transform(probe).collect()}
    assert scores["recent"] > 0.5 > scores["never"]

    importances = feature_importances(result.model, FEATURES)
    assert importances[0][0] in ("days_since_purchase", "purchases_28d")  # both separate the classes perfectly
    assert dict(importances)["constant_one"] == 0.0
    assert sum(w for _, w in importances) == pytest.approx(1.0)


def test_same_seed_same_data_gives_the_same_model(spark: SparkSession) -> None:
    settings = TrainingSettings(gbt=replace_subsampling(TINY_GBT, 0.7), search=(), seed=11)
    frame = obvious_frame(spark)
    first = fit_with_time_validation(frame, FEATURES, settings).model.transform(frame)
    second = fit_with_time_validation(frame, FEATURES, settings).model.transform(frame)
    key = ["snapshot_time", "user_id"]
    assert [r.raw_score for r in first.orderBy(key).collect()] == [r.raw_score for r in second.orderBy(key).collect()]


def replace_subsampling(params: GbtParams, rate: float) -> GbtParams:
    from dataclasses import replace

    return replace(params, subsampling_rate=rate)


def test_single_snapshot_fits_without_search(spark: SparkSession) -> None:
    frame = obvious_frame(spark).where(f"snapshot_time = TIMESTAMP'{SNAPSHOTS[0].isoformat()}'")
    result = fit_with_time_validation(frame, FEATURES, TrainingSettings(gbt=TINY_GBT))
    assert result.candidates == () and result.validation_snapshot is None
    assert result.n_train == 10 and result.params == TINY_GBT


def test_fitted_pipeline_saves_and_reloads_with_the_score_stage(spark: SparkSession, tmp_path: Path) -> None:
    frame = obvious_frame(spark)
    result = fit_with_time_validation(frame, FEATURES, TrainingSettings(gbt=TINY_GBT, search=(TINY_GBT,)))
    result.model.write().overwrite().save(str(tmp_path / "m"))
    reloaded = PipelineModel.load(str(tmp_path / "m"))
    key = ["snapshot_time", "user_id"]
    before = [r.raw_score for r in result.model.transform(frame).orderBy(key).collect()]
    after = [r.raw_score for r in reloaded.transform(frame.drop("label")).orderBy(key).collect()]
    assert before == after
