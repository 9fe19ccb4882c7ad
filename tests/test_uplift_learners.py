"""Uplift learners and treatment flags on small Spark frames whose true effect is known by construction."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pyspark.sql import functions as F

from segments_lib.language.definitions import GbtParams
from segments_lib.language.treatment import treatment_flags
from segments_lib.model import uplift
from segments_lib.model.uplift import CLASS_TRANSFORMATION, T_LEARNER, X_LEARNER, fit_uplift

T = datetime(2026, 5, 25, tzinfo=timezone.utc)
SMALL = GbtParams(max_iter=8, max_depth=1, step_size=0.5, subsampling_rate=1.0, min_instances_per_node=10)


def test_treated_means_a_treatment_event_in_the_first_window_after_the_snapshot(spark) -> None:
    send = "Campaign Sent"
    events = spark.createDataFrame([
        ("u1", send, T),  # at T exactly: exposed
        ("u2", send, T + timedelta(days=1)),  # the window's end is exclusive
        ("u3", send, T - timedelta(seconds=1)),  # before T: a feature, not the treatment
        ("u5", send, T + timedelta(hours=2)), ("u5", send, T + timedelta(hours=3)),  # twice: still one row
        ("u6", "Open App", T),  # another event
    ], "user_id string, event_name string, event_time timestamp")
    population = spark.createDataFrame([(T, f"u{i}") for i in range(1, 7)], "snapshot_time timestamp, user_id string")
    flags = {r.user_id: r.treated for r in treatment_flags(events, population, [send], timedelta(days=1)).collect()}
    assert flags == {"u1": 1, "u2": 0, "u3": 0, "u4": 0, "u5": 1, "u6": 0}
    with pytest.raises(ValueError, match="treatment window must be positive"):
        treatment_flags(events, population, [send], timedelta(0))


def _randomized_rows(spark):
    """Two snapshots of 800 rows. Feature f = 1: treated convert 80 %, control 20 % (uplift 0.6);
    f = 0: both 30 % (uplift 0). Exact counts, no sampling noise."""
    rows = []
    for snapshot in (T - timedelta(days=7), T):
        for f, treated_positives, control_positives in ((1, 160, 40), (0, 60, 60)):
            for treated, positives in ((1, treated_positives), (0, control_positives)):
                rows += [(snapshot, float(f), treated, 1 if i < positives else 0) for i in range(200)]
    return spark.createDataFrame(rows, "snapshot_time timestamp, f double, treated int, label int")


@pytest.mark.parametrize("fit", [uplift.fit_t_learner, uplift.fit_class_transformation, uplift.fit_x_learner])
def test_each_learner_recovers_the_effect_where_it_is_and_none_where_it_is_not(spark, fit) -> None:
    rows = _randomized_rows(spark)
    model = fit(rows, ["f"], SMALL, 3)
    assert model.treated_share == pytest.approx(0.5)
    by_f = {r.f: r.u for r in model.transform(rows).groupBy("f").agg(F.avg(uplift.UPLIFT_COL).alias("u")).collect()}
    assert by_f[1.0] == pytest.approx(0.6, abs=0.1)
    assert by_f[0.0] == pytest.approx(0.0, abs=0.1)


@pytest.mark.parametrize("fit", [uplift.fit_t_learner, uplift.fit_class_transformation, uplift.fit_x_learner])
def test_as_one_pipeline_the_learner_writes_score_equal_to_its_uplift_and_round_trips(spark, fit, tmp_path) -> None:
    from pyspark.ml import PipelineModel

    rows = _randomized_rows(spark).withColumn("user_id", F.monotonically_increasing_id().cast("string"))
    model = fit(rows, ["f"], SMALL, 3)
    pipeline = model.as_pipeline(rows.select("user_id", "f"))
    pipeline.write().save(str(tmp_path / "pipeline"))
    loaded = PipelineModel.load(str(tmp_path / "pipeline"))
    # Without user_id too: MLflow checks a logged model on an input example of the feature columns only.
    scored = loaded.transform(rows.select("f").distinct())
    assert scored.columns[0] == "f" and scored.columns[-1] == "score"
    expected = {r.f: r.uplift for r in model.transform(rows.select("f").distinct()).collect()}
    assert {r.f: r.score for r in scored.collect()} == pytest.approx(expected, abs=1e-12)


def test_the_search_judges_every_learner_on_the_newest_snapshot_and_keeps_the_best(spark) -> None:
    fitted = fit_uplift(_randomized_rows(spark), ["f"], SMALL, 3)
    assert set(fitted.validation_qini) == {T_LEARNER, CLASS_TRANSFORMATION, X_LEARNER}
    assert fitted.validation_snapshots == (T,)  # two snapshots: the older one fits, the newest judges
    best = max(fitted.validation_qini.values())
    assert fitted.validation_qini[fitted.model.learner] == best
    # The right ranking puts the f = 1 users (tied) first. On the 800 newest rows, 400 of them treated:
    # q(1/2) = 160 - 40 * 200/200 = 120 and q(1) = 220 - 100 * 400/400 = 120, i.e. 0.3 per treated user.
    # The curve (0, 0), (1/2, 0.3), (1, 0.3) less the line x * 0.3 is 0, 0.15, 0: area 2 * (1/2 * 0.15 / 2).
    assert best == pytest.approx(0.075, abs=1e-9)
    assert fitted.n_train == 1600
    assert uplift.UPLIFT_COL in fitted.model.transform(_randomized_rows(spark)).columns


def test_one_arm_only_is_refused_with_the_counts(spark) -> None:
    rows = _randomized_rows(spark).where("treated = 1")
    with pytest.raises(ValueError, match="treated and control rows, found 800 treated of 800"):
        uplift.fit_t_learner(rows, ["f"], SMALL, 3)
