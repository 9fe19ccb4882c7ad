"""The BG/NBD pipeline stage and how the model treats users beyond the training range of recency and tenure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.ml import PipelineModel
from pyspark.sql import SparkSession

from segments_lib.language.definitions import GbtParams
from segments_lib.model.pipeline import BgNbd, BgNbdModel, build_pipeline, feature_importances, with_class_weights

BASE = ["count_all__buy", "span_days__buy", "first_days__buy"]


def test_bgnbd_stage_adds_p_alive_and_rate_from_its_parameters(spark: SparkSession) -> None:
    # r = 1, alpha = 2, a = 1, b = 2. Three purchases (x = 2), t_x = 4, T = 10:
    # odds = a / (b + x − 1) · ((alpha + T) / (alpha + t_x))^(r + x) = 1/3 · 2^3 = 8/3, P(alive) = 3/11,
    # rate = 3/11 · (r + x) / (alpha + T) = 3/11 · 3/12. One purchase (x = 0): alive, rate 1/12.
    # Never purchased: 0 and 0.
    model = BgNbdModel(slugs=["buy"], fitted=json.dumps({"buy": {"r": 1.0, "alpha": 2.0, "a": 1.0, "b": 2.0}}))
    schema = "user_id string, count_all__buy double, span_days__buy double, first_days__buy double"
    frame = spark.createDataFrame([("u", 3.0, 4.0, 10.0), ("v", 1.0, 0.0, 10.0), ("w", 0.0, None, None)], schema)
    out = {r.user_id: (r.bgnbd_p_alive__buy, r.bgnbd_rate__buy) for r in model.transform(frame).collect()}
    assert out["u"] == pytest.approx((3 / 11, 3 / 11 * 3 / 12))
    assert out["v"] == pytest.approx((1.0, 1 / 12))
    assert out["w"] == (0.0, 0.0)


def test_bgnbd_stage_with_a_horizon_adds_the_chance_of_an_event_within_it(spark: SparkSession) -> None:
    # The parameters and users above, H = 12 days. u: P(alive) 3/11, λ | alive ~ Gamma(r + x = 3, α + T = 12),
    # P(none in 12 days) = (12 / 24)^3 = 1/8, so 3/11 · 7/8. v: alive, Gamma(1, 12): 1 − 12/24 = 1/2.
    # Never purchased: 0.
    model = BgNbdModel(slugs=["buy"], fitted=json.dumps({"buy": {"r": 1.0, "alpha": 2.0, "a": 1.0, "b": 2.0}}),
                       horizonDays=12.0)
    schema = "user_id string, count_all__buy double, span_days__buy double, first_days__buy double"
    frame = spark.createDataFrame([("u", 3.0, 4.0, 10.0), ("v", 1.0, 0.0, 10.0), ("w", 0.0, None, None)], schema)
    out = {r.user_id: r.bgnbd_p_any__buy for r in model.transform(frame).collect()}
    assert out == pytest.approx({"u": 3 / 11 * 7 / 8, "v": 0.5, "w": 0.0})
    without = BgNbdModel(slugs=["buy"], fitted=json.dumps({"buy": {"r": 1.0, "alpha": 2.0, "a": 1.0, "b": 2.0}}))
    assert "bgnbd_p_any__buy" not in without.transform(frame).columns


def test_bgnbd_stage_fits_on_the_rows_it_is_given(spark: SparkSession) -> None:
    rows = [(f"u{i}", float(1 + i % 4), float(i % 4) * 10.0, 60.0) for i in range(200)]
    frame = spark.createDataFrame(rows, "user_id string, count_all__buy double, span_days__buy double, "
                                        "first_days__buy double")
    fitted = json.loads(BgNbd(slugs=["buy"]).fit(frame).getOrDefault("fitted"))["buy"]
    assert set(fitted) == {"r", "alpha", "a", "b"} and all(v > 0 for v in fitted.values())


def test_pipeline_with_customer_base_columns_feeds_the_bgnbd_inputs_and_round_trips(
        spark: SparkSession, tmp_path: Path) -> None:
    rows = [(float(1 + i % 5), float(i % 5) * 7.0, 40.0, float(i % 3), i % 5 >= 2) for i in range(120)]
    frame = spark.createDataFrame(rows, "count_all__buy double, span_days__buy double, first_days__buy double, "
                                        "noise double, label boolean").selectExpr("*", "cast(label as double) as y")
    frame = frame.drop("label").withColumnRenamed("y", "label")
    cols = [*BASE, "noise"]
    weighted, _ = with_class_weights(frame)
    tiny = GbtParams(max_iter=3, max_depth=2, min_instances_per_node=1, subsampling_rate=1.0)
    model = build_pipeline(cols, tiny, seed=1).fit(weighted)
    names = [n for n, _ in feature_importances(model, cols)]
    assert sorted(names) == sorted([*cols, "bgnbd_p_alive__buy", "bgnbd_rate__buy"])
    model.write().overwrite().save(str(tmp_path / "m"))
    again = PipelineModel.load(str(tmp_path / "m"))
    assert ([r.raw_score for r in again.transform(frame).collect()]
            == [r.raw_score for r in model.transform(frame).collect()])
    # With the segment's horizon the GBT also reads P(any in H), and the blend ranks by it; both survive a save.
    horizon = build_pipeline(cols, tiny, seed=1, blend_slugs=["buy"], horizon_days=30.0).fit(weighted)
    assert sorted(n for n, _ in feature_importances(horizon, cols)) == sorted(
        [*cols, "bgnbd_p_alive__buy", "bgnbd_rate__buy", "bgnbd_p_any__buy"])
    assert horizon.stages[-1].getOrDefault("family") == "bgnbd_p_any"
    horizon.write().overwrite().save(str(tmp_path / "h"))
    reloaded = PipelineModel.load(str(tmp_path / "h"))
    assert ([r.raw_score for r in reloaded.transform(frame).collect()]
            == [r.raw_score for r in horizon.transform(frame).collect()])


def test_beyond_the_training_range_trees_are_flat_and_the_pace_ratio_keeps_old_customers_in_range(
        spark: SparkSession) -> None:
    # Training: customers 30–90 days old, silence 0.1–5 of their usual gaps; they buy again when the
    # silence is under 1.5 gaps. Nobody in training is older than 90 days or quieter than 5 gaps.
    rows = [(30.0 + (i % 61), 0.1 + (i % 50) * 0.1, float((0.1 + (i % 50) * 0.1) < 1.5)) for i in range(400)]
    frame = spark.createDataFrame(rows, "first_days double, silence_to_gap double, label double")
    weighted, _ = with_class_weights(frame)
    params = GbtParams(max_iter=5, max_depth=2, min_instances_per_node=5, subsampling_rate=1.0)
    model = build_pipeline(["first_days", "silence_to_gap"], params, seed=1).fit(weighted)
    probe = spark.createDataFrame([
        ("young_regular", 60.0, 1.0), ("old_regular", 900.0, 1.0),  # 10x older than anyone trained on
        ("quiet_at_edge", 60.0, 5.0), ("quiet_beyond", 60.0, 50.0),  # 10x quieter than anyone trained on
    ], "user_id string, first_days double, silence_to_gap double")
    score = {r.user_id: r.raw_score for r in model.transform(probe).collect()}
    # Age beyond the range changes nothing while the pace ratio is familiar: the old regular scores as
    # the young one. Silence beyond the range scores as the quietest training user: trees are constant
    # past the last split, they never extrapolate the trend.
    assert score["old_regular"] == pytest.approx(score["young_regular"])
    assert score["quiet_beyond"] == pytest.approx(score["quiet_at_edge"])
    assert score["young_regular"] > score["quiet_at_edge"]
