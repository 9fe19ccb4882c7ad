"""A real MLflow tracking server on loopback: the project logs to it by URI, and its REST API shows the results."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from segments_lib.store.tracking import configure_mlflow, ensure_experiment, experiment_name
from tests.conftest import make_config, write_events
from tests.support.mlflow_server import MlflowRest
from tests.support.segments import two_small_segments


@pytest.mark.slow
def test_logging_through_the_server_is_visible_over_rest(tracking_server: str, tmp_path: Path,
                                                          restore_tracking_uri: None) -> None:
    import mlflow

    cfg = make_config(tmp_path / "ws", mlflow={"tracking_uri": tracking_server})
    assert configure_mlflow(cfg.mlflow) == tracking_server
    experiment_id = ensure_experiment(cfg.mlflow, "smoke")
    curve = tmp_path / "curve.csv"
    curve.write_text("threshold,precision,recall\n0.5,0.75,0.6\n")
    with mlflow.start_run(experiment_id=experiment_id, run_name="2026-06-01") as run:
        mlflow.log_params({"max_depth": 3, "segment": "smoke"})
        mlflow.log_metric("holdout_auc_pr", 0.42)
        mlflow.log_artifact(str(curve), artifact_path="calibration")
    client = mlflow.MlflowClient()
    client.create_registered_model("segments_smoke")
    version = client.create_model_version("segments_smoke", f"runs:/{run.info.run_id}/calibration", run.info.run_id)
    client.set_registered_model_alias("segments_smoke", "champion", version.version)

    rest = MlflowRest(tracking_server)
    by_name = {e["name"]: e for e in rest.experiments()}
    assert experiment_name(cfg.mlflow, "smoke") in by_name
    runs = rest.runs([by_name["segments/smoke"]["experiment_id"]])
    assert [r["info"]["run_id"] for r in runs] == [run.info.run_id]
    metrics = {m["key"]: m["value"] for m in runs[0]["data"]["metrics"]}
    params = {p["key"]: p["value"] for p in runs[0]["data"]["params"]}
    assert metrics == {"holdout_auc_pr": 0.42}
    assert params == {"max_depth": "3", "segment": "smoke"}
    assert [f["path"] for f in rest.artifacts(run.info.run_id, "calibration")] == ["calibration/curve.csv"]
    assert rest.registered_model("segments_smoke")["aliases"] == [{"alias": "champion", "version": "1"}]
    champion = rest.model_version_by_alias("segments_smoke", "champion")
    assert (champion["version"], champion["run_id"]) == ("1", run.info.run_id)


def test_rest_client_reports_a_missing_model_as_an_http_error(tracking_server: str) -> None:
    import urllib.error

    with pytest.raises(urllib.error.HTTPError, match="404"):
        MlflowRest(tracking_server).registered_model("no_such_model")


def test_overlay_uri_wins_over_the_embedded_store(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, mlflow={"tracking_uri": "http://127.0.0.1:5999"})
    assert cfg.mlflow.tracking_uri == "http://127.0.0.1:5999"


NIGHT = date(2026, 6, 1)
TWO_SMALL_SEGMENTS = two_small_segments()


@pytest.mark.slow
def test_nightly_job_logs_runs_artifacts_and_champions_to_the_server(
        spark, demo_events, tracking_server: str, tmp_path: Path, restore_tracking_uri: None) -> None:
    from segments_lib.job.runner import run_job
    from segments_lib.store import tables

    segments_file = tmp_path / "segments.yaml"
    segments_file.write_text(TWO_SMALL_SEGMENTS)
    cfg = make_config(tmp_path / "ws", segments_file=str(segments_file), mlflow={"tracking_uri": tracking_server})
    write_events(demo_events, cfg)  # ~1.5k demo users, 70 days ending NIGHT (seed 11)

    assert run_job(cfg, [NIGHT], None, "auto") == 0

    night = {r.segment: r for r in tables.read_output(spark, cfg, tables.SEGMENT_RUNS).collect()}
    rest = MlflowRest(tracking_server)
    experiments = {e["name"]: e["experiment_id"] for e in rest.experiments()}
    for segment in ("likely_to_purchase", "engagement_booster"):
        assert night[segment].status in ("ok", "precision_unreachable"), night[segment].reason
        runs = rest.runs([experiments[f"segments/{segment}"]])
        assert len(runs) == 1
        run = runs[0]
        run_id = run["info"]["run_id"]
        assert run_id == night[segment].mlflow_run_id
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert (tags["segment"], tags["run_date"], tags["promotion"]) == (segment, "2026-06-01", "champion")
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert 0.0 < metrics["auc_pr"] <= 1.0 and 0.0 < metrics["base_rate"] < 1.0
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        assert params["segment.prediction_window"] == "7d"
        assert params["snapshot.calibration"].startswith("2026-05-25")
        logged = {f["path"] for f in rest.artifacts(run_id)}
        assert {"model", "threshold_curve.csv", "feature_importances.csv", "thresholds.json"} <= logged
        name = f"segments_{segment}"
        aliases = {a["alias"]: a["version"] for a in rest.registered_model(name)["aliases"]}
        assert aliases == {"champion": "1", "challenger": "1"}
        champion = rest.model_version_by_alias(name, "champion")
        assert champion["run_id"] == run_id
        assert str(night[segment].model_version) == champion["version"]
