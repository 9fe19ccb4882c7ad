"""Notebooks execute headless on demo data, so they cannot rot (each test owns one notebook)."""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from segments_lib.config import PROJECT_ROOT

NOTEBOOKS = PROJECT_ROOT / "notebooks"


def _execute(notebook: Path, env: dict[str, str], timeout: int = 300) -> nbformat.NotebookNode:
    nb = nbformat.read(notebook, as_version=4)
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
                       ).execute()
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb


def _outputs(nb: nbformat.NotebookNode) -> tuple[str, int]:
    text, images = [], 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text.append(output.get("text", ""))
            data = output.get("data", {})
            text.append(data.get("text/plain", ""))
            images += "image/png" in data
    return "\n".join(text), images


def _write_report_tables(root: Path) -> None:
    """Three nights of two segments, shaped like `segment_runs` and `segment_backtest`."""
    from deltalake import write_deltalake

    nights = [date(2026, 5, 1) + timedelta(days=i) for i in range(3)]
    runs = pd.DataFrame([
        {"run_date": night, "segment": segment, "status": "ok", "members_high": 10 + i, "members_medium": 40 + i,
         "members_low": 90 + i, "score_psi": 0.02 * i, "membership_entered": None if i == 0 else 5,
         "membership_exited": None if i == 0 else 4, "membership_jaccard": None if i == 0 else 0.8}
        for segment in ("alpha", "beta") for i, night in enumerate(nights)
    ])
    ledger = pd.DataFrame([
        {"segment": segment, "scored_date": night - timedelta(days=7), "evaluated_on": night, "level": level,
         "promised_precision": promised, "promised_lower_bound": promised - 0.1, "members": 20,
         "true_positives": 15, "realized_precision": 0.75 if level != "high" or i else 0.6,
         "meets_lower_bound": level != "high" or i > 0}
        for segment in ("alpha", "beta") for i, night in enumerate(nights)
        for level, promised in (("high", 0.8), ("medium", 0.6), ("low", 0.4))
    ])
    write_deltalake(str(root / "tables" / "segment_runs"), runs)
    write_deltalake(str(root / "tables" / "segment_backtest"), ledger)


@pytest.mark.timeout(600)
def test_segment_report_runs_on_a_workspace(tmp_path: Path) -> None:
    _write_report_tables(tmp_path)
    nb = _execute(NOTEBOOKS / "segment_report.ipynb", {"SEGMENTS_WORKSPACE": str(tmp_path)})
    text, images = _outputs(nb)
    assert "6 segment-nights, 18 ledger rows" in text
    assert "plotted 2 segment(s): alpha, beta" in text
    assert images == 2  # one four-panel figure per segment
    # high missed on the first of three nights in both segments: kept 2 of 3
    assert "0.666667" in text


# --- compare_runs.ipynb -------------------------------------------------------------------------

CURVE = pd.DataFrame({"threshold": [0.2, 0.5, 0.8], "members": [90, 40, 10], "true_positives": [36, 24, 8],
                      "precision": [0.4, 0.6, 0.8], "precision_lower": [0.3, 0.45, 0.5],
                      "recall": [0.9, 0.6, 0.2]})


def _log_training_run(segment: str, run_date: date, auc_pr: float, importances: dict[str, float],
                      champion: tuple[str, float] | None, cfg) -> str:
    """A run shaped like training's: tags, metrics, curve and importances CSVs, registered version, promotion."""
    import tempfile
    from datetime import datetime, timezone

    import mlflow

    from segments_lib.store import tracking

    experiment_id = tracking.ensure_experiment(cfg.mlflow, segment)
    tags = tracking.run_tags(segment, "conversion", run_date)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{segment}-{run_date}", tags=tags) as run:
        mlflow.log_metrics({"auc_pr": auc_pr, "auc_roc": 0.7, "base_rate": 0.1})
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            CURVE.to_csv(folder / "threshold_curve.csv", index=False)
            pd.DataFrame(list(importances.items()), columns=["feature", "importance"]).to_csv(
                folder / "feature_importances.csv", index=False)
            (folder / "model").mkdir()
            (folder / "model" / "MLmodel").write_text("flavors: {}\n")
            mlflow.log_artifacts(str(folder))
        client = mlflow.MlflowClient()
        name = tracking.registered_model_name(cfg.mlflow, segment)
        if not client.search_registered_models(f"name = '{name}'"):
            client.create_registered_model(name)
        version = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id).version
        holdout = datetime(2026, 5, 25, tzinfo=timezone.utc)
        tracking.register_model(cfg.mlflow, segment, str(version), {"high": None, "medium": 0.5, "low": 0.2},
                                auc_pr, holdout, run_date, list(importances))
        tracking.promote_if_better(cfg.mlflow, segment, str(version), auc_pr,
                                   champion[1] if champion else None, champion[0] if champion else None)
    return run.info.run_id


@pytest.mark.timeout(600)
def test_compare_runs_shows_metrics_curves_importance_changes_and_champions(
        tmp_path: Path, restore_tracking_uri: None) -> None:
    from deltalake import write_deltalake

    from segments_lib.store.tracking import configure_mlflow
    from tests.conftest import make_config

    cfg = make_config(tmp_path)
    configure_mlflow(cfg.mlflow)
    _log_training_run("alpha", date(2026, 5, 25), 0.30,
                      {"recency_purchase": 0.5, "freq_open_7d": 0.3, "tenure": 0.2}, None, cfg)
    _log_training_run("alpha", date(2026, 6, 1), 0.35,
                      {"recency_purchase": 0.4, "freq_open_7d": 0.1, "tenure": 0.2, "gap_cart_purchase": 0.3},
                      ("1", 0.30), cfg)
    _log_training_run("beta", date(2026, 6, 1), 0.50, {"tenure": 1.0}, None, cfg)
    write_deltalake(str(tmp_path / "tables" / "segment_backtest"), pd.DataFrame([
        {"segment": "alpha", "scored_date": date(2026, 5, 25), "level": "medium", "realized_precision": 0.62},
    ]))

    nb = _execute(NOTEBOOKS / "compare_runs.ipynb", {"SEGMENTS_WORKSPACE": str(tmp_path)})
    text, images = _outputs(nb)
    assert "comparing A = alpha 2026-05-25" in text and "with B = alpha 2026-06-01" in text
    # B − A: gap_cart_purchase +0.3 (new), freq_open_7d −0.2, recency_purchase −0.1, tenure 0
    assert "largest changes first: gap_cart_purchase, freq_open_7d, recency_purchase, tenure" in text
    assert "alpha: champion v2 because holdout AUC-PR 0.3500 >= champion v1 0.3000" in text
    assert "beta: champion v1 because no champion yet" in text
    assert images == 2  # AUC-PR and realised precision over time; the two PR curves


def test_every_notebook_is_executed_by_a_test() -> None:
    source = Path(__file__).read_text()
    untested = [nb.name for nb in NOTEBOOKS.glob("*.ipynb") if f'"{nb.name}"' not in source]
    assert not untested, f"notebooks without a test in tests/test_notebooks.py: {untested}"
