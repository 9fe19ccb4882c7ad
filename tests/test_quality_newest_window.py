"""The newest complete window trains (issue 19 item 3) and the holdout stays out of sample.

Calendar for run date 2026-06-01, H = 7d, 2 older snapshots, stride 7d (by hand): calibration
2026-05-25 (label window [05-25, 06-01)), older training snapshots 2026-05-18 and 2026-05-11 (label
windows closing 05-25 and 05-18). Half of the users at 05-25 train, the other half is the holdout.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from segments_lib.language.definitions import GbtParams, Occurs, SegmentDefinition, TrainingSettings
from segments_lib.model.training import fit_and_calibrate, is_holdout_row, is_training_row, segment_calendar
from tests.conftest import make_config

RUN_DATE = date(2026, 6, 1)
CALIBRATION = datetime(2026, 5, 25, tzinfo=timezone.utc)
OLDER = (datetime(2026, 5, 18, tzinfo=timezone.utc), datetime(2026, 5, 11, tzinfo=timezone.utc))
H = timedelta(days=7)
GBT = GbtParams(max_iter=10, max_depth=2, step_size=0.3, subsampling_rate=1.0, min_instances_per_node=5, max_bins=16)
SEGMENT = SegmentDefinition(
    name="buyers", kind="conversion", target=Occurs(("Purchase Completed",)), past_window=timedelta(days=28),
    prediction_window=H, training=TrainingSettings(snapshots=2, stride=timedelta(days=7), gbt=GBT, search=(),
                                                   min_positives=5, min_negatives=5, seed=3),
)
USERS = [f"u{i}" for i in range(300)]


def test_training_and_holdout_rows_partition_the_frame_and_never_share_a_label_window(spark: SparkSession) -> None:
    calendar = segment_calendar(SEGMENT, RUN_DATE)
    assert calendar.calibration == CALIBRATION and calendar.training == OLDER
    rows = [(t, u) for t in (CALIBRATION, *OLDER) for u in USERS]
    frame = spark.createDataFrame(rows, "snapshot_time timestamp, user_id string").select(
        "*", is_training_row(calendar, 3).alias("train"), is_holdout_row(calendar, 3).alias("holdout")).toPandas()
    frame["snapshot_time"] = frame["snapshot_time"].dt.tz_localize(None)
    # Every row is exactly one of the two.
    assert (frame["train"] ^ frame["holdout"]).all()
    newest = frame[frame["snapshot_time"] == CALIBRATION.replace(tzinfo=None)]
    held_out = set(newest.loc[newest["holdout"], "user_id"])
    # The newest window trains: about half its users (Binomial(300, 1/2) = 150 +- 3 sigma, 26).
    assert 124 <= len(newest) - len(held_out) <= 176
    # Every older row trains, and the holdout is at the calibration snapshot only.
    assert frame.loc[frame["snapshot_time"] != CALIBRATION.replace(tzinfo=None), "train"].all()
    # No held-out user trains at 05-25; their training rows are at 05-18 and 05-11, whose label windows
    # end at 05-25 and 05-18, never after 05-25 where the holdout's label window opens.
    theirs = frame[frame["user_id"].isin(held_out) & frame["train"]]
    assert set(theirs["snapshot_time"]) == {t.replace(tzinfo=None) for t in OLDER}
    assert max(theirs["snapshot_time"]) + H <= CALIBRATION.replace(tzinfo=None)
    # The split is stable: the same night splits alike.
    again = spark.createDataFrame(rows, "snapshot_time timestamp, user_id string").where(
        is_holdout_row(calendar, 3)).select("user_id").toPandas()
    assert set(again["user_id"]) == held_out


@pytest.mark.timeout(900)
def test_a_feature_that_gives_the_holdout_away_is_never_learned(spark: SparkSession, tmp_path: Path) -> None:
    # `leak` equals the label for the held-out users only and is noise for every training row; `signal`
    # is a weak honest feature. Had any holdout row trained, the trees would split on `leak` and the
    # holdout AUC-ROC would be 1.0; trained only on training rows, `leak` is useless to them.
    calendar = segment_calendar(SEGMENT, RUN_DATE)
    rng = random.Random(5)
    rows = []
    for t in (CALIBRATION, *OLDER):
        for u in USERS:
            signal = rng.random()
            label = int(rng.random() < 0.3 + 0.4 * signal)
            rows.append((t, u, label, signal, float(rng.random() < 0.5)))
    schema = "snapshot_time timestamp, user_id string, label int, signal double, leak double"
    frame = spark.createDataFrame(rows, schema)
    holdout = is_holdout_row(calendar, 3)
    frame = frame.withColumn("leak", F.when(holdout, F.col("label").cast("double")).otherwise(F.col("leak")))
    cfg = make_config(tmp_path / "ws", nightly={"min_segment_size": 2})
    trained = fit_and_calibrate(cfg, SEGMENT, frame, ["signal", "leak"], calendar)
    try:
        n_holdout = frame.where(holdout).count()
        assert trained.metrics["n_holdout"] == n_holdout and trained.fit.n_train == 3 * len(USERS) - n_holdout
        # A 0.3 → 0.7 probability ramp in `signal` gives an AUC near 0.7; far from the leak's 1.0.
        assert trained.metrics["auc_roc"] < 0.85
    finally:
        trained.scored.unpersist()
