"""One segment's night as a chain of typed stages: decide → (train) → features → score → write → checks.

Every stage reads the `Night` (session, config, segment, events, run date, timer) and the outputs of
the stages before it, and returns a small frozen result; `segment_result` builds the `segment_runs`
row once from those outputs. `runner.run_segment` composes the chain and turns any exception into a
`failed` result, so a stage may raise.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

import pandas as pd
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from segments_lib.config import AppConfig
from segments_lib.features.frame import eligible_features
from segments_lib.job.inference import score_model, scoring_pipeline
from segments_lib.job.level_report import (
    LevelSummary,
    curve_base_rate,
    format_uplift_levels,
    level_summaries,
    reachable_hint,
    strictest_number,
)
from segments_lib.job.results import (
    STATUS_FAILED,
    STATUS_NO_ELIGIBLE,
    STATUS_OK,
    STATUS_UNREACHABLE,
    MemberCounts,
    SegmentResult,
    count_members,
    snapshot_time,
)
from segments_lib.job.scoring import (
    LevelThreshold,
    ScoringContext,
    level_thresholds,
    member_flag,
    membership_rows,
    membership_slice,
)
from segments_lib.language.definitions import NAMED_LEVELS, SegmentDefinition, segment_levels, uplift_shares
from segments_lib.language.fingerprint import changed_parts, fingerprint
from segments_lib.language.treatment import behaviour_events
from segments_lib.language.windows import ReadWindow, backtest_window, scoring_window, training_window
from segments_lib.model.reasons import REASON_COLUMNS, with_reasons
from segments_lib.model.training import STATUS_REUSED, train_segment
from segments_lib.model.training import STATUS_SKIPPED as TRAINING_SKIPPED
from segments_lib.model.uplift_training import train_uplift_segment
from segments_lib.progress import StageTimer
from segments_lib.promise import calibration, checks
from segments_lib.promise.calibration import expected_sizes
from segments_lib.promise.checks import Drift
from segments_lib.promise.ledger import retrain_triggers
from segments_lib.promise.stability import ChurnStats, membership_churn
from segments_lib.store import champion_copy, tables, tracking, validated
from segments_lib.store.tracking import SCORE_WITH_LAST_CHAMPION, ChampionInfo

log = logging.getLogger(__name__)

NO_MODEL_REASON = "no model trained for this run date or earlier; run with --retrain auto or always"


@dataclass(frozen=True)
class PreparedEvents:
    events: DataFrame  # validated and deduplicated (the validated table, lazily); stages read their windows
    version: int | None  # Delta version of the events source that was read
    counts: dict[str, int]  # validation counts of the days this job (re)validated
    first_time: datetime | None  # first_time, last_time, event_counts: the whole validated history
    last_time: datetime | None
    event_counts: dict[str, int]
    cached: DataFrame | None = None  # a persisted frame `events` is read from, if any

    def release(self) -> None:
        """Drop the persisted events once the job's nights are done."""
        (self.cached if self.cached is not None else self.events).unpersist()


@dataclass(frozen=True)
class Night:
    """What every stage of one segment's night reads."""
    spark: SparkSession
    cfg: AppConfig
    segment: SegmentDefinition
    prepared: PreparedEvents
    run_date: date
    retrain: str  # one of results.RETRAIN_MODES
    timer: StageTimer
    # Why the tracking store cannot be used tonight; set, the night scores from the champion copy
    # (mlflow.on_unreachable: score_with_last_champion) and reads every model artifact from it.
    store_down: str | None = None

    @property
    def keys(self) -> dict[str, object]:
        """The (segment, run date) slice every output table write of this night replaces."""
        return {"segment": self.segment.name, "run_date": self.run_date}

    def events_in(self, window: ReadWindow) -> DataFrame:
        """The validated events of one stage's window, read with partition pruning on event_date."""
        return validated.in_window(self.prepared.events, window)

    def copied(self, run_id: str) -> champion_copy.CopiedArtifacts:
        """The champion copy's artifacts of the model trained by `run_id` (a night without the store)."""
        found = champion_copy.artifacts(self.spark, self.cfg, self.segment.name, run_id)
        if found is None:
            raise champion_copy.ChampionCopyError(
                f"no champion copy of run {run_id} for segment {self.segment.name} at "
                f"{champion_copy.copies_path(self.cfg)}")
        return found

    def threshold_curve(self, model: ChampionInfo) -> pd.DataFrame:
        """The held-out precision/recall curve the scoring model was calibrated with."""
        if self.store_down is None:
            return tracking.run_artifact_frame(model.run_id, champion_copy.THRESHOLD_CURVE)
        return self.copied(model.run_id).threshold_curve

    def drift_baseline(self, model: ChampionInfo) -> Any | None:
        if self.store_down is None:
            return checks.drift_baseline(model.run_id)
        return self.copied(model.run_id).drift_baseline

    def promises_of(self, run_id: str) -> Any | None:
        """The thresholds.json of the model that scored a closed night (None without the store and a copy)."""
        if self.store_down is None:
            return checks.thresholds_of_run(run_id)
        found = champion_copy.artifacts(self.spark, self.cfg, self.segment.name, run_id)
        return None if found is None else found.thresholds


def is_uplift(segment: SegmentDefinition) -> bool:
    """An uplift segment ranks by predicted uplift: its levels are top shares and its ledger is realised uplift."""
    return segment.treatment is not None


# ---- decide ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    retrain_reason: str | None  # why tonight trains; None: the champion scores it


def retrain_decision(champion_run_date: date | None, run_date: date, every_days: int, mode: str,
                     triggers: Sequence[str] = (), last_trained_run_date: date | None = None,
                     definition_changed: Sequence[str] = ()) -> str | None:
    """Why this night must (re)train, or None when the champion can score it.

    The `retrain_every` clock runs from the newest training on or before this night
    (`last_trained_run_date`, the `challenger`), not from the champion: a challenger that lost to the
    champion still restarts it, otherwise an unbeaten champion would retrain every night once it is old.
    """
    if mode == "always":
        return "--retrain always"
    if champion_run_date is None:
        return "no champion yet"
    if champion_run_date > run_date:
        # A champion trained after this night has seen its future; a backfill must not score with it.
        return f"champion was trained for {champion_run_date}, after this run date"
    if mode == "never":
        return None
    if definition_changed:
        # The champion answers the old question; scoring with it would label members of another segment.
        return f"segment definition changed since the champion was trained: {', '.join(definition_changed)}"
    newest = champion_run_date
    if last_trained_run_date is not None and newest < last_trained_run_date <= run_date:
        newest = last_trained_run_date
    age = (run_date - newest).days
    if age >= every_days:
        what = "champion" if newest == champion_run_date else f"last training ({newest})"
        return f"{what} is {age} days old (retrain_every {every_days}d)"
    if triggers:
        return "; ".join(triggers)
    return None


def decide(night: Night) -> Decision:
    """The champion, last night's retrain triggers and the retrain clock decide whether tonight trains."""
    cfg, name = night.cfg, night.segment.name
    with night.timer.stage("champion"):
        champion = tracking.load_champion(cfg.mlflow, name)
        previous = checks.last_night(night.spark, cfg, name, night.run_date)
    triggers = retrain_triggers(previous.score_psi, cfg.nightly.score_psi_retrain, previous.precision_flag,
                                cfg.nightly.backtest_flag_nights)
    changed = changed_parts(champion.definition, fingerprint(night.segment)) if champion else []
    return Decision(retrain_decision(champion.trained_run_date if champion else None, night.run_date,
                                     night.segment.training.retrain_every.days, night.retrain, triggers,
                                     tracking.last_trained_run_date(cfg.mlflow, name), changed))


# ---- train ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Training:
    retrained: bool = False  # a new run (not a reused one) trained tonight
    retrain_reason: str = ""
    model_version: str | None = None  # the version tonight trained or reused
    skipped: str | None = None  # the training's reason when the data cannot train a model: a skipped night
    pipeline: PipelineModel | None = None  # the fitted pipeline of `model_version`, when tonight trained it

    def pipeline_of(self, model: ChampionInfo) -> PipelineModel | None:
        """Tonight's fitted pipeline if `model` is the version it was logged as, else None (load it)."""
        if self.pipeline is None or model.source == champion_copy.SOURCE:
            return None
        return self.pipeline if model.version == self.model_version else None


def train(night: Night, decision: Decision) -> Training:
    """Train (or reuse tonight's run) when the decision says so; otherwise nothing happens."""
    why = decision.retrain_reason
    if why is None:
        return Training()
    log.info("[%s %s] training: %s", night.segment.name, night.run_date, why)
    with night.timer.stage("train"):
        events = night.events_in(training_window(night.segment, night.run_date))
        trainer = train_uplift_segment if is_uplift(night.segment) else train_segment
        outcome = trainer(night.spark, night.cfg, night.segment, events, night.run_date,
                          night.prepared.version, force=night.retrain == "always")
    skipped = outcome.status == TRAINING_SKIPPED
    return Training(retrained=outcome.status != STATUS_REUSED, retrain_reason=why,
                    model_version=None if skipped else outcome.model_version,
                    skipped=outcome.reason if skipped else None, pipeline=outcome.pipeline)


def scoring_model(night: Night, training: Training) -> ChampionInfo | None:
    """The model that scores this night: the champion, unless it postdates the night (then the model just
    trained for it). None when neither exists."""
    champion = tracking.load_champion(night.cfg.mlflow, night.segment.name)
    if champion is not None and (champion.trained_run_date is None or champion.trained_run_date <= night.run_date):
        return champion
    if training.model_version is not None:
        return tracking.load_version(night.cfg.mlflow, night.segment.name, training.model_version)
    return None


def keep_champion_copy(night: Night, model: ChampionInfo) -> None:
    """With `on_unreachable: score_with_last_champion`, copy the champion that scores tonight beside the
    output tables (once per version), so a night without the tracking store can score with it."""
    if night.cfg.mlflow.on_unreachable != SCORE_WITH_LAST_CHAMPION:
        return
    champion = tracking.load_champion(night.cfg.mlflow, night.segment.name)
    if champion is None or champion.version != model.version:  # a backfill's own model is not the champion
        return
    with night.timer.stage("champion copy"):
        if champion_copy.ensure_current(night.spark, night.cfg, night.segment.name, champion):
            log.info("[%s %s] copied champion %s v%s to %s", night.segment.name, night.run_date,
                     champion.model_name, champion.version,
                     champion_copy.model_path(night.cfg, night.segment.name, champion.version))


# ---- features -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NightFeatures:
    frame: DataFrame  # user_id, then exactly the scoring model's feature columns; persisted


def scoring_features(events: DataFrame, segment: SegmentDefinition, as_of: datetime,
                     feature_columns: Sequence[str]) -> DataFrame:
    """Eligible users at snapshot `as_of` with exactly the model's feature columns (user_id first)."""
    eligible = eligible_features(events, segment, [as_of], as_of)
    missing = set(feature_columns) - set(eligible.columns)
    # An event type the model knew but this night's history lacks is a column of "never happened".
    return eligible.rows().select(
        "user_id", *[F.col(c) if c not in missing else F.lit(None).cast("double").alias(c) for c in feature_columns]
    )


def featurize(night: Night, model: ChampionInfo) -> NightFeatures:
    with night.timer.stage("features"):
        # An uplift segment's features describe the user's own behaviour, without the sends (as in training).
        events = behaviour_events(night.events_in(scoring_window(night.segment, night.run_date)), night.segment)
        frame = scoring_features(events, night.segment,
                                 snapshot_time(night.run_date),
                                 model.feature_columns)
        return NightFeatures(frame.persist())


# ---- score ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scored:
    scores: DataFrame  # user_id, score; persisted
    membership: DataFrame  # tonight's segment_membership rows (MEMBERSHIP_SCHEMA)


def score_night(night: Night, model: ChampionInfo, features: NightFeatures,
                pipeline: PipelineModel | None = None) -> Scored:
    """Score tonight's eligible users and turn the scores into membership rows at every level.

    `pipeline` is `model`'s fitted pipeline when this night trained it; otherwise it is loaded from the
    store (or the champion copy). Loading a Spark pipeline reads every stage back with Spark jobs.
    """
    cfg, segment = night.cfg, night.segment
    ctx = ScoringContext(
        segment=segment.name, run_date=night.run_date, segment_level=segment.level_name(),
        levels=night_level_thresholds(night, model),
        model_name=model.model_name, model_version=int(model.version), mlflow_run_id=model.run_id,
        control_share=cfg.nightly.control_share, control_rotate_every=cfg.nightly.control_rotate_every,
        control_experiment=cfg.nightly.control_experiment,
    )
    with night.timer.stage("score"):
        pipeline = pipeline if pipeline is not None else scoring_pipeline(model)
        scores = score_model(night.spark, model, features.frame, pipeline).persist()
        # Materialised here, so tonight's features and scores are this stage's time and the reasons
        # stage's is the members' own; later stages read the same cached rows either way.
        scores.count()
    if is_uplift(segment):  # reasons explain one GBT's score; an uplift score is a difference of models
        return Scored(scores, membership_rows(scores, ctx))
    with night.timer.stage("reasons"):
        explained = member_reasons(night, model, pipeline, features, scores, ctx)
    return Scored(scores, membership_rows(explained, ctx))


def night_level_thresholds(night: Night, model: ChampionInfo) -> tuple[LevelThreshold, ...]:
    """Every level of the segment with the model's threshold for it.

    An uplift level is a top share; `target_precision` orders the levels strictest first, so it is
    1 − share there (the smallest share is the strictest tier).
    """
    if is_uplift(night.segment):
        return tuple(LevelThreshold(level, 1.0 - share, model.thresholds.get(level))
                     for level, share in uplift_shares(night.segment).items())
    return level_thresholds(segment_levels(night.cfg.precision_levels, night.segment), model.thresholds)


def member_reasons(night: Night, model: ChampionInfo, pipeline: PipelineModel, features: NightFeatures,
                   scores: DataFrame, ctx: ScoringContext) -> DataFrame:
    """`scores` with reason_1..3 for the members at the configured level (model.reasons); null on any failure.

    Only members are explained (SHAP is per row). The reasons are materialised here, so this stage's
    time is theirs, with a local checkpoint rather than persist: its blocks go once the night's frames
    are dropped, and nothing has to unpersist them.
    """
    threshold = next(lv.threshold for lv in ctx.levels if lv.level == ctx.segment_level)
    if threshold is None:
        return scores  # an unreachable level has no members to explain
    try:
        members = scores.where(member_flag(F.col("score"), threshold)).select("user_id").join(
            features.frame, "user_id")
        explained = with_reasons(members, pipeline, list(model.feature_columns),
                                 event_names=night.prepared.event_counts)
        reasons = explained.select("user_id", *REASON_COLUMNS).localCheckpoint(eager=True)
    except Exception as exc:  # reasons are an extra: a night never fails for them
        log.warning("[%s] reasons per member skipped, reason_1..3 stay null: %s", night.segment.name, exc)
        return scores
    return scores.join(reasons, "user_id", "left")


# ---- write ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Written:
    tonight: DataFrame  # the membership slice as written, read back from segment_membership
    previous: DataFrame | None  # last night's slice, read before tonight's write; None on a first night
    counts: MemberCounts
    curve: pd.DataFrame  # the scoring model's held-out curve, with `tonight`: the users each threshold selects


THRESHOLDS_SCHEMA = (
    "run_date date, segment string, model_version int, point int, threshold double, expected_precision double, "
    "precision_lower double, expected_recall double, holdout_members long, expected_size_today long"
)


def curve_tonight(curve: pd.DataFrame, scored: DataFrame) -> pd.DataFrame:
    """The held-out curve of the scoring model, with `tonight`: the size each threshold gives tonight."""
    return curve.assign(tonight=expected_sizes(scored, [float(t) for t in curve["threshold"]]))


def threshold_rows(spark: SparkSession, curve: pd.DataFrame, segment: str, run_date: date,
                   model_version: int) -> DataFrame:
    """`segment_thresholds` rows of a `curve_tonight` curve."""
    rows = [
        (run_date, segment, model_version, i, float(r.threshold), float(r.precision), float(r.precision_lower),
         float(r.recall), int(r.members), int(r.tonight))
        for i, r in enumerate(curve.itertuples(index=False))
    ]
    return spark.createDataFrame(rows, THRESHOLDS_SCHEMA)


def write_night(night: Night, model: ChampionInfo, scored: Scored) -> Written:
    """Replace tonight's (segment, D) slices of segment_membership and segment_thresholds; count the slice."""
    spark, cfg, name = night.spark, night.cfg, night.segment.name
    with night.timer.stage("stability"):
        previous = checks.previous_membership(spark, cfg, name, night.run_date)
    with night.timer.stage("write membership"):
        tables.write_output(
            scored.membership, cfg, tables.SEGMENT_MEMBERSHIP, night.keys, partition_by=("segment", "run_date"),
            description="Predictive segment membership: one row per scored eligible user per night.",
        )
    curve = pd.DataFrame()
    if not is_uplift(night.segment):  # an uplift model's curve is uplift per share: it is in its MLflow run
        with night.timer.stage("write thresholds"):
            curve = curve_tonight(night.threshold_curve(model), scored.scores)
            tables.write_output(threshold_rows(spark, curve, name, night.run_date, int(model.version)), cfg,
                                tables.SEGMENT_THRESHOLDS, night.keys, partition_by=("run_date",),
                                description="Held-out precision/recall/size curve of the scoring model.")
    written = tables.read_output(spark, cfg, tables.SEGMENT_MEMBERSHIP)
    tonight = written.where(membership_slice(name, night.run_date))
    counts = count_members(tonight, [lv for lv in NAMED_LEVELS if lv in cfg.precision_levels])
    return Written(tonight, previous, counts, curve)


# ---- checks ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NightChecks:
    churn: ChurnStats | None  # None on the first night: nothing to churn against
    drift: Drift
    precision_flag: bool | None  # None while the segment has no ledger yet


def check_night(night: Night, model: ChampionInfo, features: NightFeatures, scored: Scored,
                written: Written) -> NightChecks:
    """Churn against last night, drift against the model's holdout snapshot, the ledger of the closed night."""
    spark, cfg, name = night.spark, night.cfg, night.segment.name
    churn = None
    if written.previous is not None:
        with night.timer.stage("stability"):
            churn = membership_churn(written.previous, written.tonight)
    with night.timer.stage("drift"):
        drifted = checks.drift(night.drift_baseline(model), features.frame, scored.scores)
        if night.store_down is None:  # the run's drift metrics wait for the store; the table has them
            checks.log_drift(model.run_id, night.run_date, drifted)
        tables.write_output(
            checks.drift_rows(spark, name, night.run_date, int(model.version), drifted), cfg,
            tables.SEGMENT_DRIFT, night.keys, partition_by=("run_date",),
            description="PSI of the score and the model's top features: holdout snapshot vs tonight.")
    with night.timer.stage("backtest"):
        events = night.events_in(backtest_window(night.segment, night.run_date))
        if is_uplift(night.segment):  # realised uplift per level; no precision promise to flag
            checks.write_uplift_ledger(spark, cfg, events, night.segment, night.run_date, night.promises_of)
            flagged = None
        else:
            flagged = checks.write_backtest(spark, cfg, events, night.segment, night.run_date, night.promises_of)
    return NightChecks(churn, drifted, flagged)


# ---- the result -----------------------------------------------------------------------------------------

def stopped_result(night: Night, training: Training, status: str, reason: str) -> SegmentResult:
    """The result of a night that ended before scoring (no model, or data that cannot train one)."""
    return SegmentResult(
        segment=night.segment.name, run_date=night.run_date, status=status, reason=reason,
        retrained=training.retrained, retrain_reason=training.retrain_reason,
        precision_level=night.segment.level_name(), events_version=night.prepared.version,
        stage_seconds=dict(night.timer.durations),
    )


def night_status(night: Night, model: ChampionInfo, counts: MemberCounts) -> tuple[str, str]:
    """ok, or why a scored night has no members: an empty population or an unreachable level."""
    segment, cfg = night.segment, night.cfg
    if counts.eligible == 0:
        # Not an error (a campaign's population can empty out), but not "ok" either: BI shows no rows.
        return STATUS_NO_ELIGIBLE, (f"no user is in the eligible population at {night.run_date} "
                                    f"(eligible: {segment.eligible.describe()}); the membership slice is empty")
    if model.thresholds.get(segment.level_name()) is None and is_uplift(segment):
        return STATUS_UNREACHABLE, (f"the model has no threshold for level {segment.level_name()} (a new share "
                                    "takes effect at the next training, --retrain always); membership is empty")
    if model.thresholds.get(segment.level_name()) is None:
        return STATUS_UNREACHABLE, (
            f"no threshold reaches precision {segment.promised_precision(cfg.precision_levels):.2f} with "
            f"{cfg.nightly.confidence:.0%} confidence on the holdout; membership at this level "
            "is empty (see segment_thresholds for the achievable curve)")
    return STATUS_OK, ""


def segment_result(night: Night, training: Training, model: ChampionInfo, written: Written,
                   checked: NightChecks) -> SegmentResult:
    """The `segment_runs` row of a scored night, from the stages' outputs."""
    status, reason = night_status(night, model, written.counts)
    counts, churn, drifted = written.counts, checked.churn, checked.drift
    uplift = is_uplift(night.segment)
    levels = () if uplift else night_levels(night, model, counts)
    level_lines = tuple(uplift_level_lines(night, model, counts)) if uplift else ()
    hint = reachable_hint(levels, *strictest_tonight(night, model, written)) if status == STATUS_UNREACHABLE else ""
    return SegmentResult(
        segment=night.segment.name, run_date=night.run_date, status=status, reason=reason,
        retrained=training.retrained, retrain_reason=training.retrain_reason,
        eligible_count=counts.eligible, member_count=counts.members, members_by_level=dict(counts.by_level),
        control_count=counts.control, precision_level=night.segment.level_name(),
        threshold=model.thresholds.get(night.segment.level_name()), thresholds=dict(model.thresholds),
        model_name=model.model_name, model_version=int(model.version), mlflow_run_id=model.run_id,
        # An uplift model's registry metric is its holdout Qini coefficient (in the level lines), not an AUC-PR.
        holdout_auc_pr=None if uplift else model.holdout_auc_pr, events_version=night.prepared.version,
        score_psi=drifted.score_psi, top_drifting_features=drifted.top_features,
        precision_flag=checked.precision_flag,
        membership_entered=churn.entered if churn else None, membership_exited=churn.exited if churn else None,
        membership_jaccard=churn.jaccard if churn else None,
        stage_seconds=dict(night.timer.durations), model_source=model.source,
        levels=levels, base_rate=curve_base_rate(written.curve), reachable_hint=hint, level_lines=level_lines,
    )


def uplift_level_lines(night: Night, model: ChampionInfo, counts: MemberCounts) -> list[str]:
    """The summary's lines for an uplift segment's levels, from its model's held-out evidence."""
    try:
        promises = night.promises_of(model.run_id)
    except Exception as exc:  # the summary must not fail a night that scored and wrote its tables
        log.warning("[%s] the promises of run %s are unreadable (%s); the summary omits them",
                    night.segment.name, model.run_id, exc)
        return []
    members = {**counts.by_level, night.segment.level_name(): counts.members}
    return format_uplift_levels(promises, members, model.holdout_auc_pr, indent=" " * 4)


def strictest_tonight(night: Night, model: ChampionInfo, written: Written) -> tuple[tuple[float, float] | None,
                                                                                   int | None]:
    """The strictest number the model's stored choice-half table supports, and tonight's users at it."""
    if night.store_down is not None:
        return None, None
    try:
        table = tracking.run_artifact_frame(model.run_id, calibration.LEVEL_TABLE_ARTIFACTS[0])
    except Exception as exc:  # a model from before the stored tables: the hint names levels only
        log.info("[%s] no stored choice-half table for run %s (%s)", night.segment.name, model.run_id, exc)
        return None, None
    number = strictest_number(table, night.cfg.nightly.min_segment_size, night.cfg.nightly.confidence)
    if number is None:
        return None, None
    return number, written.tonight.where(F.col("score") >= F.lit(number[1])).count()


def night_levels(night: Night, model: ChampionInfo, counts: MemberCounts) -> tuple[LevelSummary, ...]:
    """Every level of the segment with tonight's threshold, held-out promise and members."""
    targets = segment_levels(night.cfg.precision_levels, night.segment)
    try:
        promises = night.promises_of(model.run_id)
    except Exception as exc:  # the summary must not fail a night that scored and wrote its tables
        log.warning("[%s] the promises of run %s are unreadable (%s); the summary omits them",
                    night.segment.name, model.run_id, exc)
        promises = None
    members = {**counts.by_level, night.segment.level_name(): counts.members}
    return level_summaries(targets, model.thresholds, promises, members)


def with_segment_level(night: Night, model: ChampionInfo) -> ChampionInfo:
    """`model` with a threshold for the segment's own level, chosen tonight if its training had none.

    A segment whose `precision_level` became a new number keeps its champion: the level is a threshold on
    the same scores, and the training run stored the held-out score tables its levels were chosen on
    (calibration.LEVEL_TABLE_ARTIFACTS). The same rule (`calibration.choose_levels`: lower bound, minimum
    size, evidence half) picks the new level's threshold from them, and the choice is recorded on the
    model (`tracking.add_level`) for the ledger and later nights. A model trained before those tables
    existed, or a night without the tracking store, leaves the level unreachable until the next training.
    """
    level = night.segment.level_name()
    if level in model.thresholds or night.store_down is not None or is_uplift(night.segment):
        return model
    cfg, name = night.cfg, night.segment.name
    try:
        score_tables = tuple(tracking.run_artifact_frame(model.run_id, a) for a in calibration.LEVEL_TABLE_ARTIFACTS)
    except Exception as exc:  # an older run without the tables: nothing to choose from
        log.warning("[%s] level %s is new and run %s has no stored score tables (%s); it stays unreachable "
                    "until the next training", name, level, model.run_id, exc)
        return model
    target = night.segment.promised_precision(cfg.precision_levels)
    choice = calibration.choose_levels((score_tables[0], score_tables[1]), {level: target},
                                       cfg.nightly.min_segment_size, cfg.nightly.confidence)[level]
    tracking.add_level(cfg.mlflow, name, model, level, {k: getattr(choice, k) for k in choice.__dataclass_fields__})
    log.info("[%s] level %s (precision %.2f) chosen tonight from the held-out evidence of v%s: %s", name, level,
             target, model.version, "unreachable" if choice.threshold is None else f"threshold {choice.threshold:.4f}")
    return replace(model, thresholds={**model.thresholds, level: choice.threshold})


def score_and_check(night: Night, training: Training, model: ChampionInfo) -> SegmentResult:
    """features → score → write → checks with `model`, then the night's `segment_runs` row."""
    model = with_segment_level(night, model)
    features = featurize(night, model)
    scored = score_night(night, model, features, training.pipeline_of(model))
    written = write_night(night, model, scored)
    checked = check_night(night, model, features, scored, written)
    scored.scores.unpersist()
    features.frame.unpersist()
    return segment_result(night, training, model, written, checked)


# ---- a night without the tracking store -------------------------------------------------------------

def score_from_copy(night: Night, store_down: str) -> SegmentResult:
    """Tonight's night scored with the segment's champion copy, because the tracking store is down.

    Nothing is trained (training needs the store; a due retrain waits for it and the reason says so).
    Membership still names the model that produced it (name, version, run id of the copy); with no copy
    the night fails and writes nothing.
    """
    night = replace(night, store_down=store_down)
    name = night.segment.name
    log.warning("[%s %s] %s; scoring from the champion copy", name, night.run_date, store_down)
    with night.timer.stage("champion copy"):
        model = champion_copy.load_current(night.spark, night.cfg, name)
    if model is None:
        return stopped_result(night, Training(), STATUS_FAILED, (
            f"{store_down}, and segment {name} has no champion copy at {champion_copy.copies_path(night.cfg)} "
            "(one is kept from the first night that scores with a champion under "
            "mlflow.on_unreachable: score_with_last_champion); no membership was written"))
    if model.trained_run_date is not None and model.trained_run_date > night.run_date:
        return stopped_result(night, Training(), STATUS_FAILED, (
            f"{store_down}, and the champion copy v{model.version} was trained for {model.trained_run_date}, "
            f"after this run date; a backfill needs the tracking store. No membership was written"))
    due = retrain_decision(model.trained_run_date, night.run_date, night.segment.training.retrain_every.days,
                           night.retrain)
    result = score_and_check(night, Training(), model)
    note = f"scored from the champion copy {model.model_name} v{model.version} ({store_down})"
    if due is not None:
        note += f"; training was due ({due}) and waits for the tracking store"
    return replace(result, reason="; ".join(part for part in (result.reason, note) if part))
