"""MLflow: the tracking store (embedded SQLite by default, any server by URI) and experiment naming."""

from __future__ import annotations

import logging
from pathlib import Path

from segments_lib.config import MlflowConfig

log = logging.getLogger(__name__)


def configure_mlflow(cfg: MlflowConfig) -> str:
    """Point MLflow at the configured store; for the embedded store, create its folders. Returns the URI."""
    import mlflow

    if cfg.tracking_uri.startswith("sqlite:///"):
        Path(cfg.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    cfg.artifact_location.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_registry_uri(cfg.tracking_uri)
    return cfg.tracking_uri


def experiment_name(cfg: MlflowConfig, segment: str) -> str:
    return f"{cfg.experiment_prefix}/{segment}"


def registered_model_name(cfg: MlflowConfig, segment: str) -> str:
    return f"{cfg.experiment_prefix}_{segment}"


def ensure_experiment(cfg: MlflowConfig, segment: str) -> str:
    """Experiment id for a segment, created with artifacts under the configured location if new."""
    import mlflow

    name = experiment_name(cfg, segment)
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = (cfg.artifact_location / segment).resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=location)
