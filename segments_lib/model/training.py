"""One segment's training run end to end: calendar → features and labels → fit → holdout → calibrate → MLflow.

`train_segment` builds the training frame from events (one feature pass over every training and
calibration snapshot) and hands it to `train_from_frame`, which does everything after: the class
checks that skip instead of crashing, the time-based fit, holdout metrics on the calibration
snapshot, calibration and thresholds (`promise.calibration` fits the isotonic score map on one fold of
that snapshot and chooses and evidences each precision level's threshold on the other), the MLflow run,
the registry and the champion/challenger decision. Re-running a (segment, run date) that already has a
finished run with a registered version reuses it unless `force` is set.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import mlflow.spark
import pandas as pd
import yaml
from mlflow.models import infer_signature
from pyspark.ml import PipelineModel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from segments_lib import plots
from segments_lib.config import AppConfig
from segments_lib.features.frame import eligible_features
from segments_lib.language.definitions import SegmentDefinition, format_duration, segment_levels
from segments_lib.language.fingerprint import fingerprint, question_changes
from segments_lib.language.snapshots import SnapshotCalendar, snapshot_calendar
from segments_lib.language.targets import build_labels
from segments_lib.model.blend import blend_slugs
from segments_lib.model.evaluation import holdout_metrics
from segments_lib.model.pipeline import (
    RAW_SCORE,
    FitResult,
    auc_pr,
    base_slugs,
    feature_importances,
    fit_with_time_validation,
)
from segments_lib.progress import StageTimer
from segments_lib.promise import calibration
from segments_lib.promise.drift import DRIFT_BASELINE, SCORE_COLUMN, psi_baseline
from segments_lib.store import tracking

log = logging.getLogger(__name__)

STATUS_TRAINED = "trained"
STATUS_REUSED = "reused"
STATUS_SKIPPED = "skipped"
KEYS = ["snapshot_time", "user_id"]
INPUT_EXAMPLE_ROWS = 5


@dataclass(frozen=True)
class TrainingOutcome:
    status: str  # trained | reused | skipped
    reason: str
    calendar: SnapshotCalendar
    run_id: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    model_uri: str | None = None
    is_champion: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, calibration.ThresholdChoice] = field(default_factory=dict)
    curve: pd.DataFrame | None = None
    # The fitted pipeline just logged as `model_version` (trained runs only): the night that trained it
    # scores with it instead of loading the same stages back from the store.
    pipeline: PipelineModel | None = None


@dataclass(frozen=True)
class TrainedModel:
    """A fitted and calibrated model with the holdout evidence behind it: everything its MLflow run records."""

    segment: SegmentDefinition
    calendar: SnapshotCalendar
    events_version: int | None
    frame: DataFrame  # keys, label and features of every labelled snapshot
    feature_cols: list[str]
    fit: FitResult
    final_model: PipelineModel  # the fitted pipeline with the calibrator as its last stage
    scored: DataFrame  # the holdout's keys, raw score and label
    calibrated: calibration.CalibrationResult
    metrics: dict[str, float]
    curve: pd.DataFrame
    choices: dict[str, calibration.ThresholdChoice]
    # (choice half, evidence half) score tables of the threshold fold: logged so that a night can choose a
    # new level's threshold exactly as training would have (job.stages.with_segment_level), without a retrain.
    level_tables: tuple[pd.DataFrame, pd.DataFrame] | None = None

    @property
    def holdout_features(self) -> DataFrame:
        return self.frame.where(is_holdout_row(self.calendar, self.segment.training.seed)).drop("label")

    @property
    def thresholds(self) -> dict[str, float | None]:
        return {level: choice.threshold for level, choice in self.choices.items()}

    def importances(self) -> list[tuple[str, float]]:
        return feature_importances(self.fit.model, self.feature_cols)


def _newest_window_half(calendar: SnapshotCalendar, seed: int) -> Column:
    """0 for the users of the newest complete window (T = D − H) who train, 1 for those held out.

    A seeded hash of user_id salted with the calibration date, like the calibration folds (a fresh
    split per training, the same split on a re-run) but with its own tag, so the training half is
    independent of the calibration and threshold folds drawn inside the holdout.
    """
    keys = [F.lit(seed), F.lit("newest-window"), F.lit(calendar.calibration.date().isoformat()), F.col("user_id")]
    return F.pmod(F.xxhash64(*keys), F.lit(2))


def is_holdout_row(calendar: SnapshotCalendar, seed: int) -> Column:
    """The holdout: the held-out half of the users at the calibration snapshot T = D − H."""
    return (F.col("snapshot_time") == F.lit(calendar.calibration)) & (_newest_window_half(calendar, seed) == 1)


def is_training_row(calendar: SnapshotCalendar, seed: int) -> Column:
    """Training rows: every user at the older snapshots, and the other half of the users at T = D − H.

    The newest complete window trains (issue 19: with H = 90d the newest training label was otherwise
    half a year old). Its held-out half stays out of sample: those users have no row at D − H in
    training, and their rows at older snapshots have label windows that close by D − H, where the
    holdout's label window opens (`snapshots.py`), so no training label sees an event the holdout is
    judged on. docs/precision-levels.md, "Where the evidence comes from".
    """
    older = F.col("snapshot_time").isin([F.lit(t) for t in calendar.training])
    newest = (F.col("snapshot_time") == F.lit(calendar.calibration)) & (_newest_window_half(calendar, seed) == 0)
    return older | newest


def segment_calendar(segment: SegmentDefinition, run_date: date) -> SnapshotCalendar:
    return snapshot_calendar(run_date, segment.horizon, segment.training.snapshots, segment.training.stride)


def build_training_frame(
    events: DataFrame, segment: SegmentDefinition, calendar: SnapshotCalendar
) -> tuple[DataFrame, list[str]]:
    """Features and labels of the eligible users at every training and calibration snapshot.

    One `build_features` call covers all snapshots. Eligible users all have an event before T, so
    each has a feature row: the join is inner and never invents "never" values for counts.
    """

    eligible = eligible_features(events, segment, calendar.labelled, as_of=calendar.scoring)
    labels = build_labels(events, eligible.population, segment.target, segment.prediction_window)
    return eligible.rows(labels), eligible.columns


def train_segment(
    spark: SparkSession,
    cfg: AppConfig,
    segment: SegmentDefinition,
    events: DataFrame,
    run_date: date,
    events_version: int | None,
    force: bool = False,
) -> TrainingOutcome:
    calendar = segment_calendar(segment, run_date)
    tracking.configure_mlflow(cfg.mlflow)
    if not force:
        reused = reusable_outcome(cfg, segment, calendar)
        if reused is not None:
            return reused
    timer = StageTimer(log, prefix=f"[{segment.name}] ")
    with timer.stage("features and labels"):
        frame, feature_cols = build_training_frame(events, segment, calendar)
    return train_from_frame(spark, cfg, segment, frame, feature_cols, calendar, events_version, timer=timer)


def reusable_outcome(cfg: AppConfig, segment: SegmentDefinition, calendar: SnapshotCalendar) -> TrainingOutcome | None:
    found = tracking.find_reusable_run(cfg.mlflow, segment.name, calendar.run_date, fingerprint(segment))
    if found is None:
        return None
    name = tracking.registered_model_name(cfg.mlflow, segment.name)
    champion = tracking.champion_version(cfg.mlflow, segment.name)
    log.info("[%s] reusing run %s (v%s) for %s", segment.name, found.run_id, found.model_version, calendar.run_date)
    return TrainingOutcome(
        status=STATUS_REUSED,
        reason=f"run {found.run_id} already trained {segment.name} for {calendar.run_date}; force=True retrains",
        calendar=calendar,
        run_id=found.run_id,
        model_name=name,
        model_version=found.model_version,
        model_uri=f"models:/{name}/{found.model_version}",
        is_champion=champion is not None and str(champion.version) == found.model_version,
        metrics=found.metrics,
    )


def _class_counts(frame: DataFrame, calendar: SnapshotCalendar, seed: int) -> dict[str, int]:
    row = frame.agg(*[
        F.sum(F.when(part & (F.col("label") == value), 1).otherwise(0)).alias(f"{name}_{kind}")
        for name, part in (("train", is_training_row(calendar, seed)), ("holdout", is_holdout_row(calendar, seed)))
        for kind, value in (("positives", 1), ("negatives", 0))
    ]).first()
    return {key: int(row[key] or 0) for key in row.asDict()}


def skip_reason(counts: dict[str, int], segment: SegmentDefinition) -> str | None:
    """Why this data cannot train a model worth registering, or None when it can."""
    settings = segment.training
    train_pos, train_neg = counts["train_positives"], counts["train_negatives"]
    if train_pos == 0 or train_neg == 0:
        return (f"training labels are all one class ({train_pos} positives, {train_neg} negatives) "
                f"at {settings.snapshots} training snapshots")
    if train_pos < settings.min_positives:
        return f"too few positives: {train_pos} < training.min_positives {settings.min_positives}"
    if train_neg < settings.min_negatives:
        return f"too few negatives: {train_neg} < training.min_negatives {settings.min_negatives}"
    if counts["holdout_positives"] == 0 or counts["holdout_negatives"] == 0:
        return (f"holdout labels are all one class ({counts['holdout_positives']} positives, "
                f"{counts['holdout_negatives']} negatives): the model cannot be judged")
    return None


def _levels(cfg: AppConfig, segment: SegmentDefinition) -> dict[str, float]:
    """Every configured level, plus the segment's own when it is a number rather than a level name."""
    return segment_levels(cfg.precision_levels, segment)


def train_from_frame(
    spark: SparkSession,
    cfg: AppConfig,
    segment: SegmentDefinition,
    frame: DataFrame,
    feature_cols: list[str],
    calendar: SnapshotCalendar,
    events_version: int | None,
    timer: StageTimer | None = None,
) -> TrainingOutcome:
    """Train, evaluate, calibrate, log and register from a ready frame (snapshot_time, user_id, label, features)."""
    timer = timer or StageTimer(log, prefix=f"[{segment.name}] ")
    frame = frame.select(*KEYS, F.col("label").cast("int").alias("label"), *feature_cols).persist()
    try:
        with timer.stage("class counts"):
            counts = _class_counts(frame, calendar, segment.training.seed)
        reason = skip_reason(counts, segment)
        if reason is not None:
            log.warning("[%s] skipped: %s", segment.name, reason)
            return TrainingOutcome(status=STATUS_SKIPPED, reason=reason, calendar=calendar,
                                   metrics={k: float(v) for k, v in counts.items()})
        trained = fit_and_calibrate(cfg, segment, frame, feature_cols, calendar, events_version, timer)
        outcome = _log_and_register(cfg, trained, timer)
        trained.scored.unpersist()
        return outcome
    finally:
        frame.unpersist()


def segment_blend_slugs(segment: SegmentDefinition, feature_cols: list[str]) -> list[str]:
    """The target events whose BG/NBD term joins the GBT's score (model.blend); empty: the GBT alone."""
    return blend_slugs(segment.target, segment.training, base_slugs(feature_cols))


def fit_segment(training_rows: DataFrame, feature_cols: list[str], segment: SegmentDefinition) -> FitResult:
    """The segment's time-validated fit: its training settings, its blend events and its horizon."""
    return fit_with_time_validation(training_rows, feature_cols, segment.training,
                                    segment_blend_slugs(segment, feature_cols),
                                    horizon_days=segment.prediction_window / timedelta(days=1))


def fit_and_calibrate(
    cfg: AppConfig,
    segment: SegmentDefinition,
    frame: DataFrame,
    feature_cols: list[str],
    calendar: SnapshotCalendar,
    events_version: int | None = None,
    timer: StageTimer | None = None,
) -> TrainedModel:
    """Fit on the training rows, score the holdout, calibrate and choose thresholds: no MLflow, no registry.

    Training and the quality benchmarks share it, so a benchmark measures exactly the model that ships.
    The returned `scored` holdout is persisted; the caller unpersists it.
    """
    timer = timer or StageTimer(log, prefix=f"[{segment.name}] ")
    seed = segment.training.seed
    with timer.stage("fit"):
        fit = fit_segment(frame.where(is_training_row(calendar, seed)), feature_cols, segment)
    with timer.stage("holdout metrics"):
        holdout = frame.where(is_holdout_row(calendar, seed))
        scored = fit.model.transform(holdout).select(*KEYS, RAW_SCORE, "label").persist()
        metrics = {**holdout_metrics(scored), "n_train": float(fit.n_train),
                   "n_validation": float(fit.n_validation), "train_seconds": fit.fit_seconds}
    with timer.stage("calibration"):
        calibrated, curve, choices, level_tables = _calibrate(cfg, segment, calendar, scored)
        metrics.update(brier_raw=calibrated.brier_before, brier_calibrated=calibrated.brier_after)
    return TrainedModel(
        segment, calendar, events_version, frame, feature_cols, fit,
        final_model=PipelineModel(stages=[*fit.model.stages, calibrated.calibrator]),
        scored=scored, calibrated=calibrated, metrics=metrics, curve=curve, choices=choices,
        level_tables=level_tables,
    )


def _calibrate(cfg: AppConfig, segment: SegmentDefinition, calendar: SnapshotCalendar, scored: DataFrame,
               ) -> tuple[calibration.CalibrationResult, pd.DataFrame, dict[str, calibration.ThresholdChoice],
                          tuple[pd.DataFrame, pd.DataFrame]]:
    """(calibrator and folds, held-out threshold curve, one threshold per level with its held-out evidence,
    the (choice half, evidence half) score tables the thresholds were chosen and measured on)."""
    # A fresh split per calibration snapshot: see calibration.split_folds.
    fold_salt = calendar.calibration.date().isoformat()
    seed, nightly = segment.training.seed, cfg.nightly
    calibrated = calibration.fit_calibrator(scored, seed=seed, salt=fold_salt)
    curve = calibration.threshold_curve(calibration.score_table(calibrated.threshold_fold),
                                        nightly.threshold_curve_points, nightly.confidence)
    choice_half, evidence_half = calibration.split_threshold_fold(calibrated.threshold_fold, seed, fold_salt)
    tables = (calibration.score_table(choice_half), calibration.score_table(evidence_half))
    choices = calibration.choose_levels(tables, _levels(cfg, segment), nightly.min_segment_size, nightly.confidence)
    return calibrated, curve, choices, tables


def _champion_auc_pr_on(holdout_scored: DataFrame, holdout_features: DataFrame, model_uri: str) -> float | None:
    """The current champion's AUC-PR on the same holdout rows, or None if it cannot read today's features."""
    try:
        champion = mlflow.spark.load_model(model_uri)
        rescored = champion.transform(holdout_features).select(*KEYS, RAW_SCORE)
        joined = rescored.join(holdout_scored.select(*KEYS, "label"), on=KEYS, how="inner")
        return auc_pr(joined)
    except Exception as exc:  # a champion trained on other feature columns cannot be compared
        log.warning("champion %s could not score the holdout: %s", model_uri, exc)
        return None


def _log_and_register(cfg: AppConfig, trained: TrainedModel, timer: StageTimer) -> TrainingOutcome:
    """One MLflow run (params, metrics, artifacts, drift baseline, model), then the registry and the champion."""
    calendar = trained.calendar
    name = tracking.registered_model_name(cfg.mlflow, trained.segment.name)
    with training_run(cfg, trained.segment, calendar, timer) as run:
        mlflow.log_params(_params(trained))
        mlflow.log_metrics({**trained.metrics, **_search_metrics(trained.fit)})
        with timer.stage("mlflow artifacts"), tempfile.TemporaryDirectory() as tmp:
            _log_artifacts(Path(tmp), trained)
        with timer.stage("drift baseline"), tempfile.TemporaryDirectory() as tmp:
            _log_drift_baseline(Path(tmp), trained)
        with timer.stage("mlflow model"):
            version = log_registered_model(trained.final_model, trained.holdout_features.select(*trained.feature_cols),
                                           name)
        with timer.stage("champion/challenger"):
            decision = _register_and_decide(cfg, trained, name, version)
    return TrainingOutcome(
        status=STATUS_TRAINED,
        reason=decision.reason,
        calendar=calendar,
        run_id=run.info.run_id,
        model_name=name,
        model_version=version,
        model_uri=f"models:/{name}/{version}",
        is_champion=decision.promoted,
        metrics=trained.metrics,
        thresholds=trained.choices,
        curve=trained.curve,
        pipeline=trained.final_model,
    )


@contextmanager
def training_run(cfg: AppConfig, segment: SegmentDefinition, calendar: SnapshotCalendar,
                 timer: StageTimer) -> Iterator[Any]:
    """The MLflow run of one (segment, run date) training, with its tags and the definition fingerprint.

    Unfinished runs of the same night are retired first (one version per night); the stage timings are
    logged as the run's last metrics. Propensity and uplift training share it.
    """
    experiment_id = tracking.ensure_experiment(cfg.mlflow, segment.name)
    tags = {**tracking.run_tags(segment.name, segment.kind, calendar.run_date),
            tracking.TAG_DEFINITION: json.dumps(fingerprint(segment), sort_keys=True)}
    tracking.retire_unfinished_runs(cfg.mlflow, segment.name, calendar.run_date)  # one version per night
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{segment.name}-{calendar.run_date}",
                          tags=tags) as run:
        yield run
        mlflow.log_metrics({f"stage_seconds.{k.replace(' ', '_')}": v for k, v in timer.durations.items()})


def log_registered_model(model: PipelineModel, features: DataFrame, name: str) -> str:
    """Log and register a Spark ML pipeline with a signature and input example from `features`; its version."""
    example = features.limit(INPUT_EXAMPLE_ROWS).toPandas()
    info = mlflow.spark.log_model(
        model, artifact_path="model", registered_model_name=name,
        signature=infer_signature(example), input_example=example,
        # Explicit requirements: inferring them starts a second Python process with its own Spark JVM.
        pip_requirements=model_requirements(),
    )
    return str(info.registered_model_version)


def _register_and_decide(cfg: AppConfig, trained: TrainedModel, name: str, version: str,
                         ) -> tracking.PromotionDecision:
    """Record the version's thresholds in the registry, then promote it if it beats the champion on this holdout."""
    segment, calendar, auc = trained.segment, trained.calendar, trained.metrics["auc_pr"]
    definition = fingerprint(segment)
    champion = tracking.champion_version(cfg.mlflow, segment.name)
    # A new trainer answers the same question: its model is compared with the champion's like any other.
    changed = (question_changes(tracking.definition_tag(dict(champion.tags or {})), definition)
               if champion else [])
    # A champion of another definition is not compared: its labels meant something else.
    champion_auc = (_champion_auc_pr_on(trained.scored, trained.holdout_features, f"models:/{name}/{champion.version}")
                    if champion is not None and not changed else None)
    tracking.register_model(cfg.mlflow, segment.name, version, trained.thresholds, auc,
                            calendar.calibration, calendar.run_date, trained.feature_cols, definition)
    return tracking.promote_if_better(cfg.mlflow, segment.name, version, auc,
                                      champion_auc, str(champion.version) if champion is not None else None, changed)


def model_requirements() -> list[str]:
    """The packages a served copy of the model needs, pinned to what trained it (xgboost for either trainer:
    the pins must not depend on the model, and the wheel is small)."""
    return [f"{name}=={version(name)}" for name in ("pyspark", "mlflow", "pandas", "numpy", "xgboost-cpu")]


def _params(trained: TrainedModel) -> dict[str, str]:
    segment, calendar, fit, events_version = trained.segment, trained.calendar, trained.fit, trained.events_version
    return {
        **tracking.flatten_params(segment, "segment"),
        "horizon": format_duration(segment.horizon),
        "windows": ",".join(format_duration(w) for w in segment.windows),
        "snapshot.scoring": calendar.scoring.isoformat(),
        "snapshot.calibration": calendar.calibration.isoformat(),
        "snapshot.training": ",".join(t.isoformat() for t in calendar.training),
        "snapshot.training_newest_half": calendar.calibration.isoformat(),
        "snapshot.validation": fit.validation_snapshot.isoformat() if fit.validation_snapshot else "none",
        **tracking.flatten_params(fit.params, "gbt"),
        "gbt.positive_weight": repr(fit.positive_weight),
        "gbt.candidates": str(len({c.params for c in fit.candidates}) or 1),
        "score.blend": "bgnbd" if fit.blended else "none",
        "events_delta_version": "none" if events_version is None else str(events_version),
        "n_features": str(len(trained.feature_cols)),
    }


def _search_metrics(fit: FitResult) -> dict[str, float]:
    """One validation AUC-PR per candidate params (in search order), `.blend` for the BG/NBD blend's score."""
    order = list(dict.fromkeys(c.params for c in fit.candidates))
    return {f"search.candidate_{order.index(c.params)}{'.blend' if c.blended else ''}.validation_auc_pr":
            c.validation_auc_pr for c in fit.candidates}


def _data_profile(frame: DataFrame, feature_cols: list[str], calendar: SnapshotCalendar, seed: int,
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-feature null share / min / mean / max on the holdout snapshot, rows and positives per snapshot).

    The features are profiled on the holdout rows, the ones the model is judged on.
    """
    features = feature_profile(frame.where(is_holdout_row(calendar, seed)), feature_cols)
    per_snapshot = (frame.groupBy("snapshot_time")
                    .agg(F.count(F.lit(1)).alias("rows"), F.sum("label").alias("positives"))
                    .orderBy("snapshot_time").toPandas())
    per_snapshot["snapshot_time"] = per_snapshot["snapshot_time"].astype(str)
    return features, per_snapshot


PROFILE_STATS = ("null_share", "min", "mean", "max")


def feature_profile(rows: DataFrame, feature_cols: list[str]) -> pd.DataFrame:
    """One row per feature (in `feature_cols` order): its null share, min, mean and max over `rows`.

    The rows are unpivoted to one (feature, value) row per cell and grouped by feature: four narrow
    aggregates that Spark compiles. Four aggregates per feature side by side (688 on the demo's 172
    features) ran without generated code: 13-17 s per training against 4-5 s (benchmarks/RESULTS.md).
    A feature without rows, or min / mean / max of one that is all null, is None.
    """
    values = rows.select(*[F.col(c).cast("double").alias(c) for c in feature_cols])
    stats = (values.unpivot([], feature_cols, "feature", "value").groupBy("feature")
             .agg(F.avg(F.col("value").isNull().cast("double")).alias("null_share"), F.min("value").alias("min"),
                  F.avg("value").alias("mean"), F.max("value").alias("max"))
             .toPandas().set_index("feature"))

    def stat(feature: str, name: str) -> float | None:
        value = stats.at[feature, name] if feature in stats.index else None
        return None if value is None or pd.isna(value) else float(value)

    return pd.DataFrame([{"feature": c, **{name: stat(c, name) for name in PROFILE_STATS}} for c in feature_cols],
                        columns=["feature", *PROFILE_STATS])


def _log_artifacts(folder: Path, trained: TrainedModel) -> None:
    """Plots, data profile, threshold curve, segment definition and thresholds: one artifact folder."""
    metrics, importances, feature_cols = trained.metrics, trained.importances(), trained.feature_cols
    holdout = trained.scored.select(RAW_SCORE, "label").toPandas()
    plots.roc_pr_png(holdout[RAW_SCORE].to_numpy(), holdout["label"].to_numpy(), metrics["auc_roc"],
                     metrics["auc_pr"], folder / "roc_pr_curves.png")
    plots.reliability_png(trained.calibrated.reliability, folder / "reliability.png")
    plots.feature_importance_png(importances, folder / "feature_importances.png")
    pd.DataFrame(importances, columns=["feature", "importance"]).to_csv(folder / "feature_importances.csv",
                                                                         index=False)
    profile, per_snapshot = _data_profile(trained.frame, feature_cols, trained.calendar, trained.segment.training.seed)
    profile.to_csv(folder / "data_profile_features.csv", index=False)
    per_snapshot.to_csv(folder / "data_profile_snapshots.csv", index=False)
    trained.curve.to_csv(folder / "threshold_curve.csv", index=False)
    if trained.level_tables is not None:
        for name, table in zip(calibration.LEVEL_TABLE_ARTIFACTS, trained.level_tables, strict=True):
            table.to_csv(folder / name, index=False)  # repr floats: thresholds survive the round trip exactly
    (folder / "segment.yaml").write_text(yaml.safe_dump(segment_yaml(trained.segment), sort_keys=False))
    (folder / "thresholds.json").write_text(json.dumps(
        {level: _choice_dict(choice) for level, choice in trained.choices.items()}, indent=2, sort_keys=True))
    (folder / "feature_columns.json").write_text(json.dumps(feature_cols, indent=2))
    mlflow.log_artifacts(str(folder))
    mlflow.set_tag("top_features", ", ".join(name for name, _ in importances[:5]))


DRIFT_FEATURES = 20


def _log_drift_baseline(folder: Path, trained: TrainedModel) -> None:
    """The holdout side of tomorrow's drift check, stored once per model instead of rebuilt every night.

    It watches the most important features and the calibrated score: one histogram per column and
    bin in a single aggregation, and past a few hundred aggregates Spark stops generating code for it.
    """
    # Feature columns only: the nightly check reads tonight's feature frame, which has no stage-derived
    # inputs (the BG/NBD columns exist only inside the pipeline).
    feature_set = set(trained.feature_cols)
    watched = [name for name, _ in trained.importances() if name in feature_set][:DRIFT_FEATURES]
    # Persisted: the quantile pass and the histogram pass would otherwise each run the whole pipeline.
    scored = trained.final_model.transform(trained.holdout_features).select(*watched, SCORE_COLUMN).persist()
    try:
        baseline = psi_baseline(scored, [*watched, SCORE_COLUMN])
    finally:
        scored.unpersist()
    (folder / DRIFT_BASELINE).write_text(json.dumps(baseline, indent=1))
    mlflow.log_artifact(str(folder / DRIFT_BASELINE))


def _choice_dict(choice: calibration.ThresholdChoice) -> dict[str, Any]:
    return {k: getattr(choice, k) for k in choice.__dataclass_fields__}


def _plain(value: Any) -> Any:
    """asdict output made YAML-safe: durations as '7d', tuples as lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, timedelta):
        return format_duration(value)
    return value


def segment_yaml(segment: SegmentDefinition) -> dict[str, Any]:
    return {"target_type": type(segment.target).__name__, **_plain(asdict(segment))}
