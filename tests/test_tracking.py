"""Tracking: params flattening, the champion/challenger rule, thresholds stored with versions, reuse lookup.

Registry tests create versions directly (no Spark model), against a real sqlite store in tmp_path.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import mlflow
import pytest

from segments_lib.language.definitions import AnyOf, GbtParams, Occurs, SegmentDefinition, Sequence
from segments_lib.store import tracking
from tests.conftest import make_config

RUN_DATE = date(2026, 6, 1)
HOLDOUT = datetime(2026, 5, 25, tzinfo=timezone.utc)


@pytest.fixture()
def mlflow_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI, which the config would otherwise inherit
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = make_config(tmp_path / "ws").mlflow
    tracking.configure_mlflow(cfg)
    return cfg


def new_version(cfg, segment: str, run_date: date = RUN_DATE, finish: bool = True) -> tuple[str, str]:
    """A finished run tagged like training's, with a registered version pointing at one of its artifacts."""
    experiment_id = tracking.ensure_experiment(cfg, segment)
    run = mlflow.start_run(experiment_id=experiment_id, tags=tracking.run_tags(segment, "conversion", run_date))
    mlflow.log_text("placeholder", "model/MLmodel")
    client = mlflow.MlflowClient()
    name = tracking.registered_model_name(cfg, segment)
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    mlflow.end_run(status="FINISHED" if finish else "FAILED")
    return run.info.run_id, str(version.version)


def test_flatten_params_spells_durations_targets_and_nesting() -> None:
    seg = SegmentDefinition(
        name="s", kind="custom",
        target=AnyOf((Occurs(("A", "B")), Sequence("Add", "Buy", timedelta(hours=24)))),
        past_window=timedelta(days=28), prediction_window=timedelta(days=7),
    )
    flat = tracking.flatten_params(seg, "segment")
    assert flat["segment.past_window"] == "28d"
    assert flat["segment.target.type"] == "AnyOf"
    assert flat["segment.target.terms.0.type"] == "Occurs"
    assert flat["segment.target.terms.0.events"] == "A,B"
    assert flat["segment.target.terms.1.within"] == "1d"
    assert flat["segment.training.gbt.max_depth"] == "3"  # the default (depth 3, issue 19)
    assert flat["segment.eligible.active_in"] == "None"
    assert tracking.flatten_params(GbtParams(max_iter=3), "gbt")["gbt.max_iter"] == "3"


@pytest.mark.parametrize(("new", "champion_auc", "champion", "promoted", "reason"), [
    (0.30, None, None, True, "no champion yet"),
    (0.30, 0.40, "1", False, "holdout AUC-PR 0.3000 < champion v1 0.4000"),
    (0.40, 0.40, "1", True, "holdout AUC-PR 0.4000 >= champion v1 0.4000"),
    (0.50, 0.40, "1", True, "holdout AUC-PR 0.5000 >= champion v1 0.4000"),
    (0.10, None, "1", True, "champion v1 cannot score the current features"),
])
def test_champion_challenger_rule(new: float, champion_auc: float | None, champion: str | None,
                                  promoted: bool, reason: str) -> None:
    decision = tracking.decide_promotion(new, champion_auc, champion)
    assert (decision.promoted, decision.reason) == (promoted, reason)


def test_first_version_becomes_champion_and_a_worse_one_stays_challenger(mlflow_cfg) -> None:
    assert tracking.load_champion(mlflow_cfg, "buy") is None
    run1, v1 = new_version(mlflow_cfg, "buy")
    tracking.register_model(mlflow_cfg, "buy", v1, {"high": 0.9, "medium": 0.7, "low": None}, 0.6, HOLDOUT,
                            RUN_DATE, ["f1", "f2"])
    first = tracking.promote_if_better(mlflow_cfg, "buy", v1, 0.6, None, None)
    assert first.promoted

    champion = tracking.load_champion(mlflow_cfg, "buy")
    assert champion is not None
    assert (champion.version, champion.run_id, champion.trained_run_date) == ("1", run1, RUN_DATE)
    assert champion.model_uri == "models:/segments_buy/1"
    assert champion.thresholds == {"high": 0.9, "medium": 0.7, "low": None}
    assert champion.holdout_auc_pr == 0.6 and champion.feature_columns == ("f1", "f2")

    _, v2 = new_version(mlflow_cfg, "buy", RUN_DATE + timedelta(days=1))
    tracking.register_model(mlflow_cfg, "buy", v2, {"high": 0.95}, 0.5, HOLDOUT, RUN_DATE, ["f1"])
    with mlflow.start_run(experiment_id=tracking.ensure_experiment(mlflow_cfg, "buy")) as run:
        second = tracking.promote_if_better(mlflow_cfg, "buy", v2, 0.5, 0.55, v1)
    assert not second.promoted
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("segments_buy", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("segments_buy", "challenger").version) == "2"
    logged = client.get_run(run.info.run_id).data
    assert logged.metrics == {"challenger_holdout_auc_pr": 0.5, "champion_holdout_auc_pr": 0.55}
    assert logged.tags["promotion"] == "challenger"
    assert logged.tags["promotion_reason"] == "holdout AUC-PR 0.5000 < champion v1 0.5500"

    _, v3 = new_version(mlflow_cfg, "buy", RUN_DATE + timedelta(days=2))
    tracking.register_model(mlflow_cfg, "buy", v3, {"high": 0.8}, 0.55, HOLDOUT, RUN_DATE, ["f1"])
    assert tracking.promote_if_better(mlflow_cfg, "buy", v3, 0.55, 0.55, v1).promoted  # equal wins
    assert tracking.load_champion(mlflow_cfg, "buy").thresholds == {"high": 0.8}


def test_reusable_run_needs_a_finished_run_of_that_date_with_a_registered_version(mlflow_cfg) -> None:
    assert tracking.find_reusable_run(mlflow_cfg, "buy", RUN_DATE) is None
    new_version(mlflow_cfg, "buy", finish=False)
    assert tracking.find_reusable_run(mlflow_cfg, "buy", RUN_DATE) is None  # a failed run is not reused
    run_id, version = new_version(mlflow_cfg, "buy")
    found = tracking.find_reusable_run(mlflow_cfg, "buy", RUN_DATE)
    assert found is not None and (found.run_id, found.model_version) == (run_id, version)
    assert tracking.find_reusable_run(mlflow_cfg, "buy", RUN_DATE + timedelta(days=1)) is None
    assert tracking.find_reusable_run(mlflow_cfg, "other", RUN_DATE) is None


def test_git_commit_is_the_checkout_head_or_none(tmp_path: Path) -> None:
    commit = tracking.git_commit()
    assert commit is None or len(commit) == 40
    assert tracking.git_commit(cwd=tmp_path) is None  # not a git checkout
