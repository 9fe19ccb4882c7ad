"""The nightly promise checks around scoring: the backtest ledger, drift against the holdout, stability.

Each function reads what earlier nights wrote (through tables.py) and returns small results that
`runner.run_segment` records in `segment_runs`; the ledger rows themselves go to `segment_backtest`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from segments_lib import tables
from segments_lib.config import AppConfig
from segments_lib.definitions import SegmentDefinition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LastNight:
    """What the previous night recorded, for tonight's retrain triggers under --retrain auto."""

    score_psi: float | None
    precision_flag: bool


def last_night(spark: SparkSession, cfg: AppConfig, segment: str, run_date: date) -> LastNight:
    runs = tables.read_output(spark, cfg, tables.SEGMENT_RUNS)
    if runs is None:
        return LastNight(None, False)
    row = (runs.where((F.col("segment") == segment) & (F.col("run_date") < F.lit(run_date)))
           .orderBy(F.col("run_date").desc()).select("score_psi", "precision_flag").first())
    if row is None:
        return LastNight(None, False)
    return LastNight(row["score_psi"], bool(row["precision_flag"]))


def write_backtest(spark: SparkSession, cfg: AppConfig, events: DataFrame, segment: SegmentDefinition,
                   run_date: date) -> bool | None:
    """Judge the membership whose prediction window closed by tonight; return the N-nights precision flag.

    None when there is no ledger yet for this segment's level (nothing scored long enough ago).
    """
    from segments_lib.monitoring import backtest_scored_date, night_ledger, precision_flag, promises_from_choices
    from segments_lib.runner import run_artifact_json

    membership = tables.read_output(spark, cfg, tables.SEGMENT_MEMBERSHIP)
    scored_date = backtest_scored_date(run_date, segment.horizon)
    if membership is not None:
        scored = membership.where((F.col("segment") == segment.name) & (F.col("run_date") == F.lit(scored_date)))
        run_row = scored.select("mlflow_run_id").first()
        if run_row is not None:
            # The promise is the one made by the model that scored that night, not tonight's model.
            promises = promises_from_choices(run_artifact_json(run_row["mlflow_run_id"], "thresholds.json"))
            rows = night_ledger(events, scored, segment, promises, run_date)
            tables.write_output(rows, cfg, tables.SEGMENT_BACKTEST,
                                {"segment": segment.name, "scored_date": scored_date},
                                partition_by=("scored_date",),
                                description="Realized vs promised precision once the prediction window closed.")
    ledger = tables.read_output(spark, cfg, tables.SEGMENT_BACKTEST)
    if ledger is None:
        return None
    flagged = precision_flag(ledger, segment.name, segment.level_name(), cfg.nightly.backtest_flag_nights,
                             as_of=scored_date)
    if flagged:
        log.warning("[%s %s] realized precision below the promised lower bound for %d nights in a row",
                    segment.name, run_date, cfg.nightly.backtest_flag_nights)
    return flagged


@dataclass(frozen=True)
class Drift:
    score_psi: float | None
    top_features: str


def drift(model, baseline_features: DataFrame, current_features: DataFrame, current_scored: DataFrame,
          feature_columns: list[str]) -> Drift:
    """PSI of every feature and of the score: the model's holdout snapshot against tonight's users."""
    from segments_lib.monitoring_drift import feature_psi, psi, top_drifting

    if baseline_features.limit(1).count() == 0:
        return Drift(None, "")
    features = feature_psi(baseline_features, current_features, feature_columns)
    baseline_scored = model.transform(baseline_features).select("score")
    return Drift(psi(baseline_scored, current_scored.select("score")), top_drifting(features))


DRIFT_FEATURES = 20


def drift_columns(run_id: str, feature_columns: list[str], limit: int = DRIFT_FEATURES) -> list[str]:
    """The model's most important features (from its run's importance CSV): the ones whose drift matters.

    PSI over every column costs one histogram per column and bin in a single aggregation; past a few
    hundred aggregates Spark stops generating code for it, so the nightly check watches the top ones.
    """
    import mlflow
    import pandas as pd

    try:
        ranked = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run_id,
                                                                 artifact_path="feature_importances.csv"))
    except Exception as exc:  # an older run without the CSV: fall back to the first columns
        log.warning("run %s has no feature_importances.csv (%s); drift watches the first %d features",
                    run_id, exc, limit)
        return feature_columns[:limit]
    known = set(feature_columns)
    return [name for name in ranked["feature"] if name in known][:limit]


def holdout_snapshot(trained_run_date: date, segment: SegmentDefinition) -> datetime:
    """The calibration snapshot the scoring model was judged on: its run date minus the label horizon."""
    return datetime(trained_run_date.year, trained_run_date.month, trained_run_date.day) - segment.horizon


def previous_membership(spark: SparkSession, cfg: AppConfig, segment: str, run_date: date) -> DataFrame | None:
    membership = tables.read_output(spark, cfg, tables.SEGMENT_MEMBERSHIP)
    if membership is None:
        return None
    previous = membership.where((F.col("segment") == segment)
                                & (F.col("run_date") == F.lit(run_date - timedelta(days=1))))
    return previous if previous.limit(1).count() else None
