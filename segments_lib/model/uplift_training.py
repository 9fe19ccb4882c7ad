"""An uplift segment's training run: features, labels and exposure → learners → holdout → levels → MLflow.

The shape follows `model.training` (one feature pass over every labelled snapshot, a time-based choice,
an out-of-time holdout, one MLflow run, the registry and the champion/challenger gate), with what uplift
changes:

* **Rows.** Eligibility and features read the user's own behaviour (`treatment.behaviour_events`: a
  send is done *to* the user); each row also carries `treated`, whether a treatment event opened its
  prediction window.
* **Holdout.** The calibration snapshot T = D − H is held out whole: both arms of a randomized send, so
  the difference of their outcome rates above any cut is the realised uplift of that cut. The
  training snapshots are the older ones; `fit_uplift` chooses the learner on the newest two of them.
* **Levels.** A level is a top share of users ranked by predicted uplift (`definitions.UPLIFT_SHARES`),
  and its threshold is that quantile of the holdout's predicted uplift. The threshold does not look at
  any outcome, so the evidence measured on the same holdout (treated and control rates above it,
  Newcombe's 95 % interval of their difference) is unbiased; it is the level's promise, and the uplift
  ledger (`promise.uplift_ledger`) holds each closed night to it.
* **Model.** `UpliftModel.as_pipeline` makes the learner one Spark ML pipeline writing `score` (the
  predicted uplift), logged and registered like every model, so scoring, the champion copy and drift
  need no uplift case. The champion/challenger gate compares Qini coefficients on the same holdout.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import mlflow
import mlflow.spark
import numpy as np
import pandas as pd
import yaml
from pyspark.ml import PipelineModel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from segments_lib import plots
from segments_lib.config import AppConfig
from segments_lib.features.frame import eligible_features
from segments_lib.language.definitions import SegmentDefinition, uplift_shares
from segments_lib.language.fingerprint import fingerprint, question_changes
from segments_lib.language.snapshots import SnapshotCalendar
from segments_lib.language.targets import build_labels
from segments_lib.language.treatment import behaviour_events, treatment_flags
from segments_lib.model import uplift_metrics
from segments_lib.model.pipeline import SNAPSHOT_COL, feature_importances
from segments_lib.model.training import (
    KEYS,
    STATUS_SKIPPED,
    STATUS_TRAINED,
    TrainingOutcome,
    log_registered_model,
    reusable_outcome,
    segment_calendar,
    segment_yaml,
    training_run,
)
from segments_lib.model.uplift import SCORE_COL, TREATED_COL, UpliftFit, fit_uplift
from segments_lib.progress import StageTimer
from segments_lib.promise.drift import DRIFT_BASELINE, psi_baseline
from segments_lib.store import tracking

log = logging.getLogger(__name__)

DRIFT_FEATURES = 20
UPLIFT_CURVE = "threshold_curve.csv"  # the name the champion copy keeps; here, the holdout's uplift per share
CURVE_SHARES = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def uplift_training_frame(events: DataFrame, segment: SegmentDefinition,
                          calendar: SnapshotCalendar) -> tuple[DataFrame, list[str]]:
    """Keys, label, treated and features of the eligible users at every labelled snapshot; the feature columns."""
    if segment.treatment is None:
        raise ValueError(f"segment {segment.name} has no treatment: it is not an uplift segment")
    behaviour = behaviour_events(events, segment)
    eligible = eligible_features(behaviour, segment, calendar.labelled, as_of=calendar.scoring)
    labels = build_labels(behaviour, eligible.population, segment.target, segment.prediction_window)
    exposed = treatment_flags(events, eligible.population, segment.treatment.events, segment.treatment.window)
    return eligible.rows(labels).join(exposed, on=KEYS, how="inner"), eligible.columns


def is_holdout(calendar: SnapshotCalendar) -> Column:
    """The holdout: every user (both arms) at the calibration snapshot T = D − H."""
    return F.col(SNAPSHOT_COL) == F.lit(calendar.calibration)


def arm_counts(frame: DataFrame, calendar: SnapshotCalendar) -> dict[str, int]:
    """Positives and negatives per (train | holdout, treated | control), in one aggregation."""
    holdout = is_holdout(calendar)
    row = frame.agg(*[
        F.sum(F.when(part & (F.col(TREATED_COL) == arm) & (F.col("label") == value), 1).otherwise(0))
        .alias(f"{part_name}_{arm_name}_{kind}")
        for part_name, part in (("train", ~holdout), ("holdout", holdout))
        for arm_name, arm in (("treated", 1), ("control", 0))
        for kind, value in (("positives", 1), ("negatives", 0))
    ]).first()
    return {key: int(row[key] or 0) for key in row.asDict()}


def uplift_skip_reason(counts: dict[str, int], segment: SegmentDefinition) -> str | None:
    """Why this data cannot train an uplift model worth registering, or None. Each arm meets the minimums alone:
    the T-learner fits one model per arm, and an arm of a few dozen outcomes says nothing about uplift."""
    settings = segment.training
    for arm in ("treated", "control"):
        positives, negatives = counts[f"train_{arm}_positives"], counts[f"train_{arm}_negatives"]
        if positives < settings.min_positives:
            return (f"too few positives in the {arm} arm: {positives} < training.min_positives "
                    f"{settings.min_positives} at {settings.snapshots} training snapshots")
        if negatives < settings.min_negatives:
            return (f"too few negatives in the {arm} arm: {negatives} < training.min_negatives "
                    f"{settings.min_negatives} at {settings.snapshots} training snapshots")
    for arm in ("treated", "control"):
        if counts[f"holdout_{arm}_positives"] + counts[f"holdout_{arm}_negatives"] == 0:
            return f"the holdout snapshot has no {arm} users: the uplift cannot be judged"
    return None


@dataclass(frozen=True)
class LevelEvidence:
    """What a level (a top share) did on the holdout: its threshold, the two arms above it, the uplift."""
    share: float
    threshold: float | None
    holdout_members: int
    treated: int
    treated_conversions: int
    control: int
    control_conversions: int
    uplift: float | None
    uplift_lower: float | None
    uplift_upper: float | None

    @property
    def expected_incremental(self) -> float | None:
        """Conversions gained per night of this size if every member is treated (holdout uplift × members)."""
        return None if self.uplift is None else self.uplift * self.holdout_members


def share_threshold(scores: np.ndarray, share: float) -> float | None:
    """The score of the ceil(share · n)-th highest user: `score >= threshold` selects about `share` of them."""
    if scores.size == 0:
        return None
    ranked = np.sort(scores)[::-1]
    return float(ranked[min(max(math.ceil(share * scores.size), 1), scores.size) - 1])


def level_evidence(score: np.ndarray, treated: np.ndarray, outcome: np.ndarray, share: float) -> LevelEvidence:
    """The holdout's evidence for one top share (see the module docstring for why it is unbiased)."""
    threshold = share_threshold(score, share)
    above = score >= threshold if threshold is not None else np.zeros(score.size, dtype=bool)
    t, y = treated[above], outcome[above]
    n_t, n_c = int(t.sum()), int((1 - t).sum())
    y_t, y_c = int((t * y).sum()), int(((1 - t) * y).sum())
    uplift = lower = upper = None
    if n_t and n_c:
        uplift = y_t / n_t - y_c / n_c
        lower, upper = uplift_metrics.difference_interval(y_t, n_t, y_c, n_c)
    return LevelEvidence(share, threshold, int(above.sum()), n_t, y_t, n_c, y_c, uplift, lower, upper)


def uplift_curve(score: np.ndarray, treated: np.ndarray, outcome: np.ndarray) -> pd.DataFrame:
    """The holdout's evidence at a ladder of top shares: what each share would have realised."""
    rows = [level_evidence(score, treated, outcome, share) for share in CURVE_SHARES]
    return pd.DataFrame([{**_evidence_dict(e), "expected_incremental": e.expected_incremental} for e in rows])


def _evidence_dict(evidence: LevelEvidence) -> dict[str, Any]:
    return {k: getattr(evidence, k) for k in evidence.__dataclass_fields__}


@dataclass(frozen=True)
class TrainedUplift:
    segment: SegmentDefinition
    calendar: SnapshotCalendar
    events_version: int | None
    feature_cols: list[str]
    fit: UpliftFit
    pipeline: PipelineModel  # features in, `score` (predicted uplift) out
    holdout: pd.DataFrame  # user_id, score, treated, label of every holdout user
    holdout_features: DataFrame  # user_id and the feature columns of the holdout users
    metrics: dict[str, float]
    levels: dict[str, LevelEvidence]

    @property
    def thresholds(self) -> dict[str, float | None]:
        return {level: evidence.threshold for level, evidence in self.levels.items()}

    def importances(self) -> list[tuple[str, float]]:
        """Feature importances averaged over the learner's GBTs (the two arms of a T-learner)."""
        summed: dict[str, float] = {}
        for model in self.fit.model.models:
            for name, weight in feature_importances(model, self.feature_cols):
                summed[name] = summed.get(name, 0.0) + weight / len(self.fit.model.models)
        return sorted(summed.items(), key=lambda kv: (-kv[1], kv[0]))


def fit_and_evaluate(cfg: AppConfig, segment: SegmentDefinition, frame: DataFrame, feature_cols: list[str],
                     calendar: SnapshotCalendar, events_version: int | None = None,
                     timer: StageTimer | None = None) -> TrainedUplift:
    """Choose and fit the learner on the older snapshots, then measure it and set the levels on the holdout."""
    timer = timer or StageTimer(log, prefix=f"[{segment.name}] ")
    settings = segment.training
    with timer.stage("fit"):
        fit = fit_uplift(frame.where(~is_holdout(calendar)), feature_cols, settings.gbt, settings.seed,
                         trainer=settings.trainer)
    pipeline = fit.model.as_pipeline(frame.select("user_id", *feature_cols))
    with timer.stage("holdout metrics"):
        holdout_rows = frame.where(is_holdout(calendar))
        holdout_features = holdout_rows.select("user_id", *feature_cols)
        scored = (pipeline.transform(holdout_rows.select("user_id", *feature_cols))
                  .select("user_id", SCORE_COL)
                  .join(holdout_rows.select("user_id", TREATED_COL, "label"), "user_id")
                  .toPandas())
        score, treated = scored[SCORE_COL].to_numpy(dtype=float), scored[TREATED_COL].to_numpy(dtype=float)
        outcome = scored["label"].to_numpy(dtype=float)
        metrics = {
            **uplift_metrics.summary(score, treated, outcome),
            "holdout_treated_share": float(treated.mean()),
            "holdout_treated_rate": float(outcome[treated == 1].mean()),
            "holdout_control_rate": float(outcome[treated == 0].mean()),
            "n_train": float(fit.n_train),
            "train_seconds": fit.fit_seconds,
            **{f"validation_qini.{name}": value for name, value in fit.validation_qini.items()},
        }
        metrics["holdout_average_uplift"] = metrics["holdout_treated_rate"] - metrics["holdout_control_rate"]
    levels = {level: level_evidence(score, treated, outcome, share)
              for level, share in uplift_shares(segment).items()}
    return TrainedUplift(segment, calendar, events_version, feature_cols, fit, pipeline,
                         scored[["user_id", SCORE_COL, TREATED_COL, "label"]], holdout_features, metrics, levels)


def train_uplift_segment(spark: SparkSession, cfg: AppConfig, segment: SegmentDefinition, events: DataFrame,
                         run_date: date, events_version: int | None, force: bool = False) -> TrainingOutcome:
    """`training.train_segment` for an uplift segment: the same outcome, reuse and skip rules."""
    calendar = segment_calendar(segment, run_date)
    tracking.configure_mlflow(cfg.mlflow)
    if not force:
        reused = reusable_outcome(cfg, segment, calendar)
        if reused is not None:
            return reused
    timer = StageTimer(log, prefix=f"[{segment.name}] ")
    with timer.stage("features and labels"):
        frame, feature_cols = uplift_training_frame(events, segment, calendar)
        frame = frame.select(*KEYS, F.col("label").cast("int").alias("label"),
                             F.col(TREATED_COL).cast("int").alias(TREATED_COL), *feature_cols).persist()
    try:
        with timer.stage("arm counts"):
            counts = arm_counts(frame, calendar)
        reason = uplift_skip_reason(counts, segment)
        if reason is not None:
            log.warning("[%s] skipped: %s", segment.name, reason)
            return TrainingOutcome(status=STATUS_SKIPPED, reason=reason, calendar=calendar,
                                   metrics={k: float(v) for k, v in counts.items()})
        trained = fit_and_evaluate(cfg, segment, frame, feature_cols, calendar, events_version, timer)
        return _log_and_register(cfg, trained, timer)
    finally:
        frame.unpersist()


def _log_and_register(cfg: AppConfig, trained: TrainedUplift, timer: StageTimer) -> TrainingOutcome:
    """One MLflow run (params, metrics, plots, levels, drift baseline, the model), then the registry."""
    calendar = trained.calendar
    name = tracking.registered_model_name(cfg.mlflow, trained.segment.name)
    with training_run(cfg, trained.segment, calendar, timer) as run:
        mlflow.log_params(_params(trained))
        mlflow.log_metrics(trained.metrics)
        with timer.stage("mlflow artifacts"), tempfile.TemporaryDirectory() as tmp:
            _log_artifacts(Path(tmp), trained)
        with timer.stage("mlflow model"):
            version = log_registered_model(trained.pipeline, trained.holdout_features.select(*trained.feature_cols),
                                           name)
        with timer.stage("champion/challenger"):
            decision = _register_and_decide(cfg, trained, name, version)
    return TrainingOutcome(status=STATUS_TRAINED, reason=decision.reason, calendar=calendar, run_id=run.info.run_id,
                           model_name=name, model_version=version, model_uri=f"models:/{name}/{version}",
                           is_champion=decision.promoted, metrics=trained.metrics)


def _champion_qini_on(trained: TrainedUplift, model_uri: str) -> float | None:
    """The champion's Qini coefficient on the same holdout, or None if it cannot read today's features."""
    try:
        champion = mlflow.spark.load_model(model_uri)
        scores = champion.transform(trained.holdout_features).select("user_id", SCORE_COL).toPandas()
    except Exception as exc:  # a champion trained on other feature columns cannot be compared
        log.warning("champion %s could not score the holdout: %s", model_uri, exc)
        return None
    # One row per holdout user: the champion's scores are aligned with the holdout's outcomes by user.
    by_user = scores.set_index("user_id")[SCORE_COL].reindex(trained.holdout["user_id"]).to_numpy(dtype=float)
    return uplift_metrics.qini_coefficient(by_user, trained.holdout[TREATED_COL].to_numpy(),
                                           trained.holdout["label"].to_numpy())


def _register_and_decide(cfg: AppConfig, trained: TrainedUplift, name: str, version: str,
                         ) -> tracking.PromotionDecision:
    segment, calendar, qini = trained.segment, trained.calendar, trained.metrics["qini_coefficient"]
    definition = fingerprint(segment)
    champion = tracking.champion_version(cfg.mlflow, segment.name)
    # A new trainer answers the same question: its model is compared with the champion's like any other.
    changed = (question_changes(tracking.definition_tag(dict(champion.tags or {})), definition)
               if champion else [])
    champion_qini = (_champion_qini_on(trained, f"models:/{name}/{champion.version}")
                     if champion is not None and not changed else None)
    # The registry's holdout metric tag holds the Qini coefficient: the number this segment's gate compares.
    tracking.register_model(cfg.mlflow, segment.name, version, trained.thresholds, qini, calendar.calibration,
                            calendar.run_date, trained.feature_cols, definition)
    return tracking.promote_if_better(cfg.mlflow, segment.name, version, qini, champion_qini,
                                      str(champion.version) if champion is not None else None, changed,
                                      metric="qini")


def _params(trained: TrainedUplift) -> dict[str, str]:
    segment, calendar, fit = trained.segment, trained.calendar, trained.fit
    return {
        **tracking.flatten_params(segment, "segment"),
        "snapshot.scoring": calendar.scoring.isoformat(),
        "snapshot.holdout": calendar.calibration.isoformat(),
        "snapshot.training": ",".join(t.isoformat() for t in calendar.training),
        "snapshot.validation": ",".join(t.isoformat() for t in fit.validation_snapshots) or "none",
        "uplift.learner": fit.model.learner,
        "uplift.treated_share": repr(fit.model.treated_share),
        **tracking.flatten_params(segment.training.gbt, "gbt"),
        "events_delta_version": "none" if trained.events_version is None else str(trained.events_version),
        "n_features": str(len(trained.feature_cols)),
    }


def _log_artifacts(folder: Path, trained: TrainedUplift) -> None:
    """Qini curve, uplift by decile, levels and their evidence, importances, definition, drift baseline."""
    holdout = trained.holdout
    score, treated, outcome = (holdout[c].to_numpy(dtype=float) for c in (SCORE_COL, TREATED_COL, "label"))
    plots.qini_png(uplift_metrics.qini_curve(score, treated, outcome), float(treated.sum()),
                   trained.metrics["qini_coefficient"], folder / "qini_curve.png")
    deciles = uplift_metrics.uplift_by_decile(score, treated, outcome)
    deciles.to_csv(folder / "uplift_by_decile.csv", index=False)
    plots.uplift_deciles_png(deciles, folder / "uplift_by_decile.png")
    uplift_curve(score, treated, outcome).to_csv(folder / UPLIFT_CURVE, index=False)
    importances = trained.importances()
    plots.feature_importance_png(importances, folder / "feature_importances.png")
    pd.DataFrame(importances, columns=["feature", "importance"]).to_csv(folder / "feature_importances.csv",
                                                                         index=False)
    (folder / "thresholds.json").write_text(json.dumps(
        {level: {**_evidence_dict(e), "expected_incremental": e.expected_incremental}
         for level, e in trained.levels.items()}, indent=2, sort_keys=True))
    (folder / "feature_columns.json").write_text(json.dumps(trained.feature_cols, indent=2))
    (folder / "segment.yaml").write_text(yaml.safe_dump(segment_yaml(trained.segment), sort_keys=False))
    # The drift baseline: tonight's features and scores against the holdout's, as for every segment.
    watched = [name for name, _ in importances if name in set(trained.feature_cols)][:DRIFT_FEATURES]
    scored = trained.pipeline.transform(trained.holdout_features).select(*watched, SCORE_COL).persist()
    try:
        (folder / DRIFT_BASELINE).write_text(json.dumps(psi_baseline(scored, [*watched, SCORE_COL]), indent=1))
    finally:
        scored.unpersist()
    mlflow.log_artifacts(str(folder))
    mlflow.set_tag("top_features", ", ".join(name for name, _ in importances[:5]))
    mlflow.set_tag("uplift_learner", trained.fit.model.learner)

