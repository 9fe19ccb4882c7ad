"""A self-contained copy of each segment's champion next to the output tables, for nights without MLflow.

With `mlflow.on_unreachable: score_with_last_champion`, every night that scores with a champion makes
sure a copy of exactly that version sits beside the output tables (any URI the tables can live at):

* the Spark ML pipeline, saved with Spark's own writer under `_champion_models/<segment>/v<version>`;
* one row per (segment, version) of the Delta table `_champion_copies`: the identity (registered name,
  version, run id, run date it was trained for), its thresholds and feature columns, and the run
  artifacts a scoring night reads (`threshold_curve.csv`, `thresholds.json`, `drift_baseline.json`).

The model files are written before the row, and the row is one Delta commit, so a reader finds a
complete copy or none. The newest `copied_at` row of a segment is its last champion. Older rows stay:
the ledger of a closed night judges the promise of the model that scored it, which may be an older
version. A night that finds the tracking store down scores from this copy and names that model in
every membership row; without a copy it writes nothing.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import date, datetime, timezone

import pandas as pd
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from segments_lib.config import AppConfig
from segments_lib.locations import Location
from segments_lib.store import tables, tracking
from segments_lib.store.tracking import ChampionInfo

COPIES_TABLE = "_champion_copies"
MODELS_FOLDER = "_champion_models"
SOURCE = "champion_copy"
THRESHOLD_CURVE = "threshold_curve.csv"
THRESHOLDS = "thresholds.json"
DRIFT_BASELINE = "drift_baseline.json"

COPIES_SCHEMA = (
    "segment string, model_version int, model_name string, run_id string, trained_run_date date, "
    "thresholds string, holdout_auc_pr double, feature_columns string, model_path string, "
    "threshold_curve_csv string, thresholds_json string, drift_baseline_json string, copied_at timestamp"
)


class ChampionCopyError(RuntimeError):
    """A champion copy cannot be written or read; the message names the segment and the location."""


@dataclass(frozen=True)
class CopiedArtifacts:
    """The run artifacts of one copied version that a scoring night needs."""
    threshold_curve: pd.DataFrame
    thresholds: object
    drift_baseline: object | None  # None: the run logged no baseline (drift is then not computed)


def copies_path(cfg: AppConfig) -> Location:
    return tables.output_path(cfg, COPIES_TABLE)


def model_path(cfg: AppConfig, segment: str, version: str) -> Location:
    return tables.output_path(cfg, MODELS_FOLDER) / segment / f"v{version}"


def _copies(spark: SparkSession, cfg: AppConfig) -> DataFrame | None:
    path = copies_path(cfg)
    return tables.read_delta(spark, path) if tables.is_delta_table(spark, path) else None


def _current_row(spark: SparkSession, cfg: AppConfig, segment: str):  # -> Row | None
    copies = _copies(spark, cfg)
    if copies is None:
        return None
    return copies.where(F.col("segment") == segment).orderBy(F.col("copied_at").desc()).first()


def current_version(spark: SparkSession, cfg: AppConfig, segment: str) -> str | None:
    """The version of the segment's last copied champion, or None when nothing was copied yet."""
    row = _current_row(spark, cfg, segment)
    return None if row is None else str(row["model_version"])


def _optional_artifact_text(run_id: str, name: str) -> str | None:
    try:
        return json.dumps(tracking.run_artifact_json(run_id, name))
    except Exception:  # a run logged before drift baselines existed: the copy says so with a null
        return None


def save(spark: SparkSession, cfg: AppConfig, segment: str, champion: ChampionInfo) -> Location:
    """Copy `champion` (read from the tracking store) beside the output tables; it becomes the last champion."""
    target = model_path(cfg, segment, champion.version)
    tracking.load_spark_model(champion.model_uri).write().overwrite().save(str(target))
    curve = tracking.run_artifact_frame(champion.run_id, THRESHOLD_CURVE)
    row = (
        segment, int(champion.version), champion.model_name, champion.run_id, champion.trained_run_date,
        json.dumps(champion.thresholds), champion.holdout_auc_pr, json.dumps(list(champion.feature_columns)),
        str(target), curve.to_csv(index=False), json.dumps(tracking.run_artifact_json(champion.run_id, THRESHOLDS)),
        _optional_artifact_text(champion.run_id, DRIFT_BASELINE),
        datetime.now(timezone.utc).replace(tzinfo=None),
    )
    tables.replace_partition(
        spark.createDataFrame([row], COPIES_SCHEMA), copies_path(cfg),
        {"segment": segment, "model_version": int(champion.version)},
        description="The champion versions copied for nights without the tracking store (mlflow.on_unreachable).",
    )
    return target


def ensure_current(spark: SparkSession, cfg: AppConfig, segment: str, champion: ChampionInfo) -> bool:
    """Copy `champion` unless it already is the segment's last copied champion; True when it copied."""
    if current_version(spark, cfg, segment) == champion.version:
        return False
    save(spark, cfg, segment, champion)
    return True


def _info(row) -> ChampionInfo:
    trained: date | None = row["trained_run_date"]
    return ChampionInfo(
        model_name=row["model_name"],
        model_uri=row["model_path"],
        version=str(row["model_version"]),
        run_id=row["run_id"],
        trained_run_date=trained,
        thresholds={k: (None if v is None else float(v)) for k, v in json.loads(row["thresholds"]).items()},
        holdout_auc_pr=row["holdout_auc_pr"],
        feature_columns=tuple(json.loads(row["feature_columns"])),
        source=SOURCE,
    )


def load_current(spark: SparkSession, cfg: AppConfig, segment: str) -> ChampionInfo | None:
    """The segment's last copied champion (its `model_uri` is the copy's folder), or None."""
    row = _current_row(spark, cfg, segment)
    return None if row is None else _info(row)


def artifacts(spark: SparkSession, cfg: AppConfig, segment: str, run_id: str) -> CopiedArtifacts | None:
    """The copied artifacts of the version trained by `run_id`, or None when no copy of it exists."""
    copies = _copies(spark, cfg)
    if copies is None:
        return None
    row = copies.where((F.col("segment") == segment) & (F.col("run_id") == run_id)).first()
    if row is None:
        return None
    baseline = row["drift_baseline_json"]
    return CopiedArtifacts(
        threshold_curve=pd.read_csv(io.StringIO(row["threshold_curve_csv"])),
        thresholds=json.loads(row["thresholds_json"]),
        drift_baseline=None if baseline is None else json.loads(baseline),
    )


def load_pipeline(model: ChampionInfo) -> PipelineModel:
    """The copied Spark ML pipeline of `model` (a `load_current` result)."""
    try:
        return PipelineModel.load(model.model_uri)
    except Exception as exc:
        raise ChampionCopyError(f"cannot read the champion copy of {model.model_name} v{model.version} at "
                                f"{model.model_uri}: {exc}") from exc
