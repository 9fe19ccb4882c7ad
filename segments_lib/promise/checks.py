"""The nightly promise checks around scoring: the backtest ledger, drift against the holdout, stability.

Each function reads what earlier nights wrote (through tables.py) and returns small results that the
night's stages (`job.stages.decide`, `write_night`, `check_night`) record in `segment_runs`; the ledger
rows themselves go to `segment_backtest` (`segment_uplift_ledger` for an uplift segment).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from segments_lib.config import AppConfig
from segments_lib.job.scoring import membership_slice
from segments_lib.language.definitions import SegmentDefinition
from segments_lib.promise.drift import DRIFT_BASELINE, SCORE_COLUMN, psi_against, top_drifting
from segments_lib.promise.ledger import backtest_scored_date, night_ledger, precision_flag, promises_from_choices
from segments_lib.promise.uplift_ledger import promises_from_json, uplift_night_ledger
from segments_lib.store import tables, tracking
from segments_lib.store.tracking import ADDED_THRESHOLDS, optional_run_artifact_json, run_artifact_json

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


def thresholds_of_run(run_id: str) -> Any | None:
    """The promises of a model's run: its `thresholds.json`, plus the levels nights chose after training."""
    promises = run_artifact_json(run_id, "thresholds.json")
    added = optional_run_artifact_json(run_id, ADDED_THRESHOLDS)
    return {**added, **promises} if isinstance(promises, dict) and isinstance(added, dict) else promises


def write_backtest(spark: SparkSession, cfg: AppConfig, events: DataFrame, segment: SegmentDefinition,
                   run_date: date, thresholds_of: Callable[[str], Any | None] = thresholds_of_run) -> bool | None:
    """Judge the membership whose prediction window closed by tonight; return the N-nights precision flag.

    None when there is no ledger yet for this segment's level (nothing scored long enough ago).
    `thresholds_of(run_id)` gives the promises of the model that scored the closed night; None (a night
    without the tracking store that has no copy of that model) leaves that night unjudged, with a warning.
    """

    membership = tables.read_output(spark, cfg, tables.SEGMENT_MEMBERSHIP)
    scored_date = backtest_scored_date(run_date, segment.horizon)
    if membership is not None:
        scored = membership.where(membership_slice(segment.name, scored_date))
        run_row = scored.select("mlflow_run_id").first()
        if run_row is not None:
            # The promise is the one made by the model that scored that night, not tonight's model.
            choices = thresholds_of(run_row["mlflow_run_id"])
            if choices is None:
                log.warning("[%s %s] the promises of run %s (which scored %s) are unavailable; that night is "
                            "not judged tonight", segment.name, run_date, run_row["mlflow_run_id"], scored_date)
            else:
                rows = night_ledger(events, scored, segment, promises_from_choices(choices, cfg.nightly.confidence),
                                    run_date)
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


def write_uplift_ledger(spark: SparkSession, cfg: AppConfig, events: DataFrame, segment: SegmentDefinition,
                        run_date: date, thresholds_of: Callable[[str], Any | None] = thresholds_of_run) -> None:
    """An uplift segment's ledger: the realised uplift per level of the membership whose window closed tonight.

    The promise judged is the one of the model that scored that night (its thresholds.json); a night whose
    model's promises are unavailable is left unjudged, with a warning, as in `write_backtest`.
    """
    membership = tables.read_output(spark, cfg, tables.SEGMENT_MEMBERSHIP)
    if membership is None:
        return
    scored_date = backtest_scored_date(run_date, segment.horizon)
    run_row = membership.where(membership_slice(segment.name, scored_date)).select("mlflow_run_id").first()
    if run_row is None:
        return
    choices = thresholds_of(run_row["mlflow_run_id"])
    if choices is None:
        log.warning("[%s %s] the promises of run %s (which scored %s) are unavailable; that night is not judged "
                    "tonight", segment.name, run_date, run_row["mlflow_run_id"], scored_date)
        return
    rows = uplift_night_ledger(events, membership, segment, promises_from_json(choices), run_date)
    tables.write_output(rows, cfg, tables.SEGMENT_UPLIFT_LEDGER, {"segment": segment.name, "scored_date": scored_date},
                        partition_by=("scored_date",),
                        description="Realised vs promised uplift per level once the prediction window closed.")


@dataclass(frozen=True)
class Drift:
    score_psi: float | None
    top_features: str
    feature_psis: tuple[tuple[str, float], ...] = ()


def drift_baseline(run_id: str) -> Any | None:
    """The holdout-side histograms training stored with the run (`drift_baseline.json`), or None."""
    try:
        return run_artifact_json(run_id, DRIFT_BASELINE)
    except Exception as exc:  # a run logged before baselines existed: no drift rather than a failed night
        log.warning("run %s has no %s (%s); drift not computed", run_id, DRIFT_BASELINE, exc)
        return None


def drift(baseline: Any | None, current_features: DataFrame, current_scored: DataFrame) -> Drift:
    """PSI of the model's most important features and of the score: its holdout snapshot against tonight.

    The holdout side was stored by training (`drift_baseline`), so a night costs two small
    aggregations over frames it already holds, not a second feature pass. No baseline, no drift.
    """
    if baseline is None:
        return Drift(None, "")
    features = [c for c in baseline["columns"] if c != SCORE_COLUMN]
    feature_psis = psi_against(baseline, current_features, features)
    (_, score_psi), = psi_against(baseline, current_scored, [SCORE_COLUMN])
    return Drift(None if math.isnan(score_psi) else score_psi, top_drifting(feature_psis), tuple(feature_psis))


DRIFT_SCHEMA = ("run_date date, segment string, model_version int, column_name string, is_score boolean, "
                "psi double, drift_rank int")


def drift_rows(spark: SparkSession, segment: str, run_date: date, model_version: int, result: Drift) -> DataFrame:
    """`segment_drift` rows: the score and every watched feature, ranked by PSI (1 = drifted most)."""
    ranked = sorted(result.feature_psis, key=lambda item: (math.isnan(item[1]), -item[1], item[0]))
    rows = [(run_date, segment, model_version, name, False, None if math.isnan(value) else value, rank)
            for rank, (name, value) in enumerate(ranked, start=1)]
    if result.score_psi is not None:
        rows.insert(0, (run_date, segment, model_version, SCORE_COLUMN, True, result.score_psi, None))
    return spark.createDataFrame(rows, DRIFT_SCHEMA)


def log_drift(run_id: str, run_date: date, result: Drift, top: int = 5) -> None:
    """Tonight's score PSI and top drifting features as metrics of the model's run, one step per night.

    Stepping by the run date's ordinal makes the MLflow UI plot drift over the model's nights.
    """
    if result.score_psi is None:
        return
    finite = [(name, value) for name, value in result.feature_psis if not math.isnan(value)]
    ranked = sorted(finite, key=lambda item: (-item[1], item[0]))[:top]
    values = [("drift.score_psi", result.score_psi)] + [(f"drift.psi.{name}", value) for name, value in ranked]
    tracking.log_nightly_metrics(run_id, run_date, values)


def previous_membership(spark: SparkSession, cfg: AppConfig, segment: str, run_date: date) -> DataFrame | None:
    membership = tables.read_output(spark, cfg, tables.SEGMENT_MEMBERSHIP)
    if membership is None:
        return None
    previous = membership.where(membership_slice(segment, run_date - timedelta(days=1)))
    return previous if previous.limit(1).count() else None
