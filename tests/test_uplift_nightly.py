"""An uplift segment through the nightly job: it trains, scores, writes membership and records realised uplift.

Demo events with randomized campaigns (1,000 users × 70 days to 2026-06-01, seed 11; a `Campaign Sent`
to half the users at 00:00 of every 7th day back from the end date: 05-25, 05-18, ...). Two nights:

* 2026-05-25 trains (holdout snapshot 05-18, training snapshots 05-11 … 04-20, all campaign days) and
  scores; its members are judged once their 7-day window closes, on
* 2026-06-01, scored by the same champion (retrain_every 30d), whose ledger evaluates night 05-25: the
  members sent a campaign at 05-25 against those who were not.

The expectations are recomputed here from the raw generated events (pandas), not from the job's tables.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from segments_lib.config import AppConfig
from segments_lib.intake.campaigns import CampaignSpec
from segments_lib.intake.demo import generate_events
from segments_lib.job.runner import run_job
from segments_lib.model.uplift_metrics import difference_interval
from segments_lib.store import tables, tracking
from tests.conftest import DEMO_END, make_config, write_events

FIRST, SECOND = date(2026, 5, 25), DEMO_END
SEGMENT = "campaign_responders"
SEGMENTS_YAML = f"""
segments:
  - name: {SEGMENT}
    kind: uplift
    target: {{occurs: {{events: [Purchase Completed]}}}}
    treatment: {{events: [Campaign Sent], window: 1d}}
    past_window: 14d
    prediction_window: 7d
    precision_level: 0.2
    eligible: {{active_in: 14d}}
    training:
      snapshots: 4
      stride: 7d
      min_positives: 20
      min_negatives: 20
      retrain_every: 30d
      gbt: {{max_iter: 8, max_depth: 3}}
      search: []
"""


@pytest.fixture(scope="module")
def raw_events() -> pd.DataFrame:
    table = generate_events(users=1000, days=70, end_date=DEMO_END, seed=11, campaigns=CampaignSpec())
    return table.to_pandas()


@pytest.fixture(scope="module")
def uplift_night(spark, raw_events: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> AppConfig:
    root = tmp_path_factory.mktemp("uplift-night")
    (root / "segments.yaml").write_text(SEGMENTS_YAML)
    cfg = make_config(root / "ws", segments_file=str(root / "segments.yaml"))
    write_events(spark.createDataFrame(raw_events), cfg)
    assert run_job(cfg, [FIRST, SECOND], None, "auto") == 0
    return cfg


def _runs(spark, cfg: AppConfig) -> dict[date, object]:
    return {r.run_date: r for r in tables.read_output(spark, cfg, tables.SEGMENT_RUNS).collect()}


def _membership(spark, cfg: AppConfig, run_date: date) -> pd.DataFrame:
    rows = tables.read_output(spark, cfg, tables.SEGMENT_MEMBERSHIP).where(
        f"segment = '{SEGMENT}' AND run_date = DATE'{run_date}'")
    return rows.toPandas()


def test_the_first_night_trains_an_uplift_model_and_the_second_reuses_it(spark, uplift_night: AppConfig) -> None:
    runs = _runs(spark, uplift_night)
    assert [(d, runs[d].status, runs[d].retrained) for d in (FIRST, SECOND)] == [
        (FIRST, "ok", True), (SECOND, "ok", False)]
    assert runs[FIRST].model_version == runs[SECOND].model_version == 1
    assert runs[FIRST].precision_level == "top20"  # a number is the share targeted, not a precision


def test_the_run_is_tracked_with_uplift_metrics_plots_and_levels(spark, uplift_night: AppConfig) -> None:
    tracking.configure_mlflow(uplift_night.mlflow)
    champion = tracking.load_champion(uplift_night.mlflow, SEGMENT)
    run = mlflow.get_run(champion.run_id)
    assert run.data.params["uplift.learner"] in ("t_learner", "class_transformation", "x_learner")
    assert run.data.params["snapshot.holdout"] == "2026-05-18T00:00:00+00:00"
    for metric in ("qini_coefficient", "auuc", "incremental_top_10pct", "incremental_top_30pct",
                   "holdout_average_uplift", "validation_qini.t_learner", "validation_qini.class_transformation",
                   "validation_qini.x_learner"):
        assert metric in run.data.metrics, metric
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(champion.run_id)}
    assert {"qini_curve.png", "uplift_by_decile.png", "uplift_by_decile.csv", "thresholds.json",
            "drift_baseline.json", "model"} <= names
    levels = json.loads(Path(mlflow.artifacts.download_artifacts(run_id=champion.run_id,
                                                                 artifact_path="thresholds.json")).read_text())
    assert {level: entry["share"] for level, entry in levels.items()} == {
        "high": 0.1, "medium": 0.3, "low": 0.5, "top20": 0.2}
    # The thresholds are quantiles of the holdout's predicted uplift: a smaller share, a higher threshold,
    # and about that share of the holdout above it (ties in a tree ensemble's scores can add a few).
    assert levels["high"]["threshold"] >= levels["top20"]["threshold"] >= levels["medium"]["threshold"] \
        >= levels["low"]["threshold"]
    holdout_users = run.data.metrics["n_users"]
    for entry in levels.values():
        assert entry["holdout_members"] >= entry["share"] * holdout_users
        assert entry["holdout_members"] == entry["treated"] + entry["control"]


def test_membership_ranks_by_the_registered_models_predicted_uplift(spark, uplift_night: AppConfig) -> None:
    members = _membership(spark, uplift_night, FIRST)
    run = _runs(spark, uplift_night)[FIRST]
    assert len(members) == run.eligible_count > 0
    assert members["score"].between(-1.0, 1.0).all()
    threshold = members["threshold"].iloc[0]
    assert (members["is_member"] == (members["score"] >= threshold)).all()
    assert int(members["is_member"].sum()) == run.member_count
    # Levels nest: the top 10 % are inside the top 30 %, which are inside the top 50 %.
    assert (members["member_high"] <= members["member_medium"]).all()
    assert (members["member_medium"] <= members["member_low"]).all()
    assert 0 < members["member_high"].sum() < members["member_medium"].sum() < members["member_low"].sum()
    assert members[["reason_1", "reason_2", "reason_3"]].isna().all().all()  # no TreeSHAP of a model difference


def test_the_ledger_records_the_realised_uplift_of_night_one_per_level(spark, uplift_night: AppConfig,
                                                                       raw_events: pd.DataFrame) -> None:
    ledger = tables.read_output(spark, uplift_night, tables.SEGMENT_UPLIFT_LEDGER).toPandas()
    assert set(ledger["scored_date"]) == {FIRST} and set(ledger["evaluated_on"]) == {SECOND}
    members = _membership(spark, uplift_night, FIRST)
    start = datetime(2026, 5, 25)
    events = raw_events.assign(event_time=pd.to_datetime(raw_events["event_time"]).dt.tz_localize(None))
    sent = set(events.loc[(events["event_name"] == "Campaign Sent") & (events["event_time"] >= start)
                          & (events["event_time"] < start + timedelta(days=1)), "user_id"])
    bought = set(events.loc[(events["event_name"] == "Purchase Completed") & (events["event_time"] >= start)
                            & (events["event_time"] < start + timedelta(days=7)), "user_id"])
    by_level = ledger.set_index("level")
    columns = {"high": "member_high", "medium": "member_medium", "low": "member_low", "top20": "is_member"}
    for level, column in columns.items():
        users = set(members.loc[members[column], "user_id"])
        treated, control = users & sent, users - sent
        row = by_level.loc[level]
        assert (row.members, row.treated_members, row.control_members) == (len(users), len(treated), len(control))
        assert (row.treated_conversions, row.control_conversions) == (len(treated & bought), len(control & bought))
        expected = len(treated & bought) / len(treated) - len(control & bought) / len(control)
        assert row.realised_uplift == pytest.approx(expected)
        assert (row.uplift_lower, row.uplift_upper) == pytest.approx(difference_interval(
            len(treated & bought), len(treated), len(control & bought), len(control)))
    everyone = by_level.loc["all"]
    assert everyone.members == len(members) and pd.isna(everyone.promised_uplift)
