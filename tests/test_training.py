"""Training end to end on a tiny obvious data set, with a real MLflow sqlite store in tmp_path.

Calendar for run date 2026-06-01, P3 = 7d, 2 training snapshots, stride 7d (by hand):
calibration 2026-05-25, training 2026-05-18 and 2026-05-11, plus half of the users at 2026-05-25.

Which half of the calibration snapshot trains is pmod(xxhash64(3, "newest-window", "2026-05-25",
user_id), 2) (0 trains, 1 is held out), evaluated once in Spark and written down here:
held out at 2026-05-25: b4, b7, b8, b9, n0, n2, n3, n8 (8 users, 4 buyers); the other 12 train
(6 buyers: b0, b1, b2, b3, b5, b6).
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import mlflow
import mlflow.spark
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType, TimestampType

from segments_lib.language.definitions import GbtParams, Occurs, SegmentDefinition, TrainingSettings
from segments_lib.model.pipeline import ensemble_stage
from segments_lib.model.trainers import is_xgboost_model
from segments_lib.model.training import (
    _data_profile,
    feature_profile,
    segment_calendar,
    train_from_frame,
    train_segment,
)
from segments_lib.store import tracking
from tests.conftest import make_config

RUN_DATE = date(2026, 6, 1)
CALIBRATION = datetime(2026, 5, 25, tzinfo=timezone.utc)
TRAINING = (datetime(2026, 5, 18, tzinfo=timezone.utc), datetime(2026, 5, 11, tzinfo=timezone.utc))
TINY_GBT = GbtParams(max_iter=5, max_depth=2, step_size=0.3, subsampling_rate=1.0, min_instances_per_node=1,
                     max_bins=8)
FEATURES = ["days_since_purchase", "purchases_28d"]
SCHEMA = StructType([
    StructField("snapshot_time", TimestampType()),
    StructField("user_id", StringType()),
    StructField("label", IntegerType()),
    StructField("days_since_purchase", DoubleType()),
    StructField("purchases_28d", DoubleType()),
])


def segment(min_positives: int = 5, min_negatives: int = 5) -> SegmentDefinition:
    return SegmentDefinition(
        name="buyers",
        kind="conversion",
        target=Occurs(("Purchase Completed",)),
        past_window=timedelta(days=28),
        prediction_window=timedelta(days=7),
        training=TrainingSettings(snapshots=2, stride=timedelta(days=7), gbt=TINY_GBT, search=(TINY_GBT,),
                                  min_positives=min_positives, min_negatives=min_negatives, seed=3),
    )


def rows_at(t: datetime, buyers: int, never: int, buyer_label: int = 1) -> list[tuple]:
    """Recent buyers (1..n days ago, 2 purchases) and users who never bought (null recency, 0 purchases)."""
    return ([(t, f"b{i}", buyer_label, float(i % 5 + 1), 2.0) for i in range(buyers)]
            + [(t, f"n{i}", 1 - buyer_label, None, 0.0) for i in range(never)])


def frame(spark: SparkSession, training_buyer_label: int = 1, shift: timedelta = timedelta(0)) -> DataFrame:
    rows = rows_at(CALIBRATION + shift, 10, 10)
    for t in TRAINING:
        rows += rows_at(t + shift, 10, 10, buyer_label=training_buyer_label)
    return spark.createDataFrame(rows, SCHEMA)


@pytest.fixture()
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI, which the config would otherwise inherit
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = make_config(tmp_path / "ws", nightly={"min_segment_size": 2})
    tracking.configure_mlflow(config.mlflow)
    return config


def test_calendar_follows_the_segment_horizon_and_settings() -> None:
    cal = segment_calendar(segment(), RUN_DATE)
    assert cal.calibration == CALIBRATION and cal.training == TRAINING


@pytest.mark.timeout(2400)  # three trainings with MLflow logging; minutes on a 2-core machine shared by others
def test_train_register_champion_reuse_and_worse_challenger(spark: SparkSession, cfg) -> None:
    seg = segment()
    first = train_from_frame(spark, cfg, seg, frame(spark), FEATURES, segment_calendar(seg, RUN_DATE), 12)

    assert first.status == "trained" and first.is_champion and first.model_version == "1"
    assert first.reason == "no champion yet"
    assert first.metrics["auc_roc"] == pytest.approx(1.0) and first.metrics["auc_pr"] == pytest.approx(1.0)
    assert first.metrics["base_rate"] == pytest.approx(0.5)
    # 40 rows at the two older snapshots + the 12 users of 2026-05-25's training half; 8 held out.
    assert first.metrics["n_holdout"] == 8 and first.metrics["n_train"] == 52
    assert first.metrics["lift_top_decile"] == pytest.approx(2.0)  # the top decile is all buyers: 1.0 / 0.5
    assert set(first.thresholds) == {"high", "medium", "low"}
    assert first.curve is not None and len(first.curve) >= 2

    # recent buyers rank above never-buyers when the registered model scores the holdout
    model = mlflow.spark.load_model(first.model_uri)
    scored = {r.user_id: r.raw_score for r in model.transform(frame(spark).drop("label")).collect()
              if r.snapshot_time.replace(tzinfo=timezone.utc) == CALIBRATION}
    assert min(v for k, v in scored.items() if k.startswith("b")) > max(v for k, v in scored.items()
                                                                        if k.startswith("n"))

    # the run is findable by segment, with its params, tags and artifacts
    runs = mlflow.search_runs(search_all_experiments=True, filter_string="tags.segment = 'buyers'",
                              output_format="list")
    assert [r.info.run_id for r in runs] == [first.run_id]
    run = runs[0]
    assert run.data.tags["run_date"] == "2026-06-01" and run.data.tags["kind"] == "conversion"
    assert run.data.params["snapshot.calibration"] == "2026-05-25T00:00:00+00:00"
    assert run.data.params["snapshot.training"] == "2026-05-18T00:00:00+00:00,2026-05-11T00:00:00+00:00"
    assert run.data.params["snapshot.training_newest_half"] == "2026-05-25T00:00:00+00:00"
    assert run.data.params["events_delta_version"] == "12"
    assert run.data.params["segment.target.type"] == "Occurs"
    assert run.data.params["segment.prediction_window"] == "7d"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(first.run_id)}
    assert {"roc_pr_curves.png", "reliability.png", "feature_importances.png", "feature_importances.csv",
            "segment.yaml", "thresholds.json", "data_profile_features.csv"} <= artifacts

    champion = tracking.load_champion(cfg.mlflow, "buyers")
    assert champion is not None and champion.version == "1" and champion.run_id == first.run_id
    assert champion.trained_run_date == RUN_DATE
    assert champion.thresholds == {level: c.threshold for level, c in first.thresholds.items()}
    assert champion.feature_columns == tuple(FEATURES)

    # re-running the same (segment, run date) reuses the run and registers nothing new
    again = train_segment(spark, cfg, seg, frame(spark), RUN_DATE, events_version=12)
    assert again.status == "reused" and again.run_id == first.run_id and again.model_version == "1"
    assert again.is_champion
    assert len(mlflow.MlflowClient().search_model_versions("name = 'segments_buyers'")) == 1

    # next day: a challenger trained on flipped labels ranks the holdout worse than the champion does
    next_day = timedelta(days=1)
    worse = train_from_frame(spark, cfg, seg, frame(spark, training_buyer_label=0, shift=next_day), FEATURES,
                             segment_calendar(seg, RUN_DATE + next_day), 13)
    assert worse.status == "trained" and worse.model_version == "2" and not worse.is_champion
    assert worse.metrics["auc_pr"] < 1.0
    assert tracking.load_champion(cfg.mlflow, "buyers").version == "1"
    worse_run = mlflow.get_run(worse.run_id)
    assert worse_run.data.tags["promotion"] == "challenger"
    assert worse_run.data.metrics["champion_holdout_auc_pr"] == pytest.approx(1.0)
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("segments_buyers", "challenger").version) == "2"


def test_skips_when_positives_are_below_the_minimum(spark: SparkSession, cfg) -> None:
    seg = segment(min_positives=27)
    outcome = train_from_frame(spark, cfg, seg, frame(spark), FEATURES, segment_calendar(seg, RUN_DATE), None)
    assert outcome.status == "skipped" and outcome.run_id is None
    # 10 buyers at each of the two older snapshots + the 6 buyers of 2026-05-25's training half.
    assert outcome.reason == "too few positives: 26 < training.min_positives 27"


def test_skips_when_training_labels_are_one_class(spark: SparkSession, cfg) -> None:
    seg = segment()
    # At 2026-05-25 only the held-out buyers (b4, b7, b8, b9) and the ten never-buyers: its training half
    # is six never-buyers, so training sees 20 + 6 negatives and no positive.
    rows = [r for r in rows_at(CALIBRATION, 10, 10) if r[1] in {"b4", "b7", "b8", "b9"} or r[1].startswith("n")]
    for t in TRAINING:
        rows += [(t, f"n{i}", 0, None, 0.0) for i in range(10)]
    outcome = train_from_frame(spark, cfg, seg, spark.createDataFrame(rows, SCHEMA), FEATURES,
                               segment_calendar(seg, RUN_DATE), None)
    assert outcome.status == "skipped"
    assert outcome.reason.startswith("training labels are all one class (0 positives, 26 negatives)")
    assert mlflow.search_runs(search_all_experiments=True, filter_string="tags.segment = 'buyers'",
                              output_format="list") == []


def test_data_profile_describes_the_held_out_rows_per_feature(spark: SparkSession) -> None:
    # The holdout (module docstring): b4, b7, b8, b9 (days since purchase 5, 3, 4, 5; 2 purchases each)
    # and n0, n2, n3, n8 (never bought: null recency, 0 purchases).
    features, per_snapshot = _data_profile(frame(spark), FEATURES, segment_calendar(segment(), RUN_DATE), seed=3)
    assert features.to_dict("records") == [
        {"feature": "days_since_purchase", "null_share": 0.5, "min": 3.0, "mean": 4.25, "max": 5.0},
        {"feature": "purchases_28d", "null_share": 0.0, "min": 0.0, "mean": 1.0, "max": 2.0},
    ]
    assert per_snapshot.to_dict("records") == [
        {"snapshot_time": t.date().isoformat(), "rows": 20, "positives": 10}
        for t in sorted((*TRAINING, CALIBRATION))
    ]


def records(profile) -> list[dict]:
    """The profile's rows with a missing statistic as None (pandas holds it as NaN)."""
    return profile.astype(object).where(profile.notna(), None).to_dict("records")


def test_feature_profile_of_an_all_null_feature_and_of_no_rows(spark: SparkSession) -> None:
    rows = spark.createDataFrame([("a", None, 1.0), ("b", None, 4.0)], "user_id string, never double, some double")
    assert records(feature_profile(rows, ["some", "never"])) == [
        {"feature": "some", "null_share": 0.0, "min": 1.0, "mean": 2.5, "max": 4.0},
        {"feature": "never", "null_share": 1.0, "min": None, "mean": None, "max": None},
    ]
    empty = feature_profile(rows.limit(0), ["some"])
    assert records(empty) == [{"feature": "some", "null_share": None, "min": None, "mean": None,
                                         "max": None}]


@pytest.mark.timeout(2400)  # two trainings with MLflow logging
def test_an_xgboost_champion_meets_a_gbt_challenger_on_the_same_holdout(spark: SparkSession, cfg) -> None:
    gbt = segment()
    xgb = dataclasses.replace(gbt, training=dataclasses.replace(gbt.training, trainer="xgboost"))
    first = train_from_frame(spark, cfg, xgb, frame(spark), FEATURES, segment_calendar(xgb, RUN_DATE), 12)
    assert first.status == "trained" and first.is_champion
    assert first.metrics["auc_roc"] == pytest.approx(1.0)
    assert mlflow.get_run(first.run_id).data.params["segment.training.trainer"] == "xgboost"
    # The registered model is xgboost's, and it ranks recent buyers above never-buyers.
    model = mlflow.spark.load_model(first.model_uri)
    assert is_xgboost_model(ensemble_stage(model))
    scored = {r.user_id: r.raw_score for r in model.transform(frame(spark).drop("label")).collect()
              if r.snapshot_time.replace(tzinfo=timezone.utc) == CALIBRATION}
    assert min(v for k, v in scored.items() if k.startswith("b")) > max(v for k, v in scored.items()
                                                                        if k.startswith("n"))

    # Next day a Spark GBT trained on flipped labels: another trainer asks the same question, so the
    # challenger is judged against the xgboost champion on its holdout instead of replacing it.
    next_day = timedelta(days=1)
    worse = train_from_frame(spark, cfg, gbt, frame(spark, training_buyer_label=0, shift=next_day), FEATURES,
                             segment_calendar(gbt, RUN_DATE + next_day), 13)
    assert worse.status == "trained" and not worse.is_champion
    assert worse.reason.endswith("< champion v1 1.0000")
    assert tracking.load_champion(cfg.mlflow, "buyers").version == "1"
