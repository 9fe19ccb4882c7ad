"""The job driver behind `jobs.nightly`: session, events, then every night and segment in order.

Kept out of `jobs/` so that the demo, the tests and the notebooks drive exactly the same code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timezone

import mlflow
import mlflow.spark
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from segments_lib.config import AppConfig
from segments_lib.features.engine import build_features, event_profile
from segments_lib.features.spec import feature_columns as spec_columns
from segments_lib.features.spec import feature_spec_for
from segments_lib.intake.events import (
    EventSchemaError,
    TooManyRejectedError,
    ValidationRules,
    check_rejected_share,
    conform,
    format_counts,
    validate,
)
from segments_lib.job.results import (
    STATUS_FAILED,
    STATUS_NO_ELIGIBLE,
    STATUS_OK,
    STATUS_SKIPPED,
    STATUS_UNREACHABLE,
    SegmentResult,
    count_members,
    failed_result,
    snapshot_time,
    summary_table,
    write_runs,
)
from segments_lib.job.scoring import ScoringContext, level_thresholds, membership_rows
from segments_lib.language.definitions import SegmentDefinition
from segments_lib.language.eligibility import as_utc, eligible_population, snapshot_frame
from segments_lib.language.segment_config import SegmentConfigError, load_segments
from segments_lib.model.training import STATUS_SKIPPED as TRAINING_SKIPPED
from segments_lib.model.training import train_segment
from segments_lib.progress import StageTimer
from segments_lib.promise import checks as night_checks
from segments_lib.promise.calibration import expected_sizes
from segments_lib.promise.ledger import retrain_triggers
from segments_lib.promise.stability import membership_churn
from segments_lib.store import tables, tracking
from segments_lib.store.session import build_session
from segments_lib.store.store_check import mask_uri, tracking_store_refusal
from segments_lib.store.tracking import configure_mlflow

log = logging.getLogger(__name__)


class JobError(RuntimeError):
    """The job cannot run at all (no events table, bad segment config); the message says why."""


@dataclass(frozen=True)
class PreparedEvents:
    events: DataFrame  # validated, deduplicated, persisted
    version: int | None  # Delta version of the events table that was read
    counts: dict[str, int]
    first_time: datetime | None
    last_time: datetime | None
    event_counts: dict[str, int]


def read_source_events(spark: SparkSession, cfg: AppConfig) -> tuple[DataFrame, int | None]:
    path = tables.events_path(cfg)
    if cfg.events.format == "parquet":
        if not path.exists():
            raise JobError(f"events table not found: no Parquet data at {path} (events.path in config)")
        return spark.read.parquet(str(path)), None
    if not tables.is_delta_table(spark, path):
        raise JobError(
            f"events table not found: no Delta table at {path} (events.path in config). "
            "Generate demo data with `python -m jobs.generate_demo_events` or point events.path at your table."
        )
    version = tables.delta_version(spark, path)
    return tables.read_delta(spark, path, version=version), version


def prepare_events(spark: SparkSession, cfg: AppConfig, quarantine_date: date) -> PreparedEvents:
    """Read, conform and validate the events once per job; quarantine the rejects; persist the rest."""
    raw, version = read_source_events(spark, cfg)
    conformed = conform(raw, cfg.events.columns, cfg.events.source_timezone)
    # Validation's as-of is the wall clock: an event stamped later than now is a data error, while
    # events after a backfilled run date are legitimate history for that night's labels.
    result = validate(conformed, datetime.now(timezone.utc), ValidationRules.from_config(cfg.events),
                      run_date=quarantine_date)
    log.info("events v%s: %s valid of %s; %s", version, result.counts["valid"], result.counts["total"],
             format_counts(result.counts))
    check_rejected_share(result, cfg.events.max_rejected_share)
    if result.rejected_count:
        tables.replace_partition(result.rejected, tables.quarantine_path(cfg), {"run_date": quarantine_date},
                                 partition_by=("run_date",))
    events = result.valid.persist(StorageLevel.MEMORY_AND_DISK)
    profile = events.groupBy("event_name").agg(
        F.count(F.lit(1)).alias("n"), F.min("event_time").alias("first"), F.max("event_time").alias("last")
    ).collect()
    if not profile:
        raise JobError(f"events table at {tables.events_path(cfg)} has no valid events")
    return PreparedEvents(
        events=events,
        version=version,
        counts=result.counts,
        first_time=min(r["first"] for r in profile),
        last_time=max(r["last"] for r in profile),
        event_counts={r["event_name"]: int(r["n"]) for r in profile},
    )


def select_segments(all_segments: Sequence[SegmentDefinition], wanted: str | None) -> list[SegmentDefinition]:
    if not wanted:
        return list(all_segments)
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    known = {s.name: s for s in all_segments}
    unknown = [n for n in names if n not in known]
    if unknown:
        from segments_lib.config import suggest

        hints = "; ".join(f"'{n}'{suggest(n, list(known))}" for n in unknown)
        raise JobError(f"--segments names unknown segment(s) {hints}; defined: {', '.join(known)}")
    return [known[n] for n in names]


def timer_for(logger: logging.Logger, segment: str, run_date: date) -> StageTimer:
    return StageTimer(logger, prefix=f"[{segment} {run_date}] ")


def retrain_decision(champion_run_date: date | None, run_date: date, every_days: int, mode: str,
                     triggers: Sequence[str] = (), last_trained_run_date: date | None = None) -> str | None:
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


def scoring_model(cfg: AppConfig, segment: SegmentDefinition, run_date: date, trained_version: str | None):
    """The model that scores this night: the champion, unless it postdates the night (then the model just
    trained for it). Returns tracking.ChampionInfo or None."""

    champion = tracking.load_champion(cfg.mlflow, segment.name)
    if champion is not None and (champion.trained_run_date is None or champion.trained_run_date <= run_date):
        return champion
    if trained_version is not None:
        return tracking.load_version(cfg.mlflow, segment.name, trained_version)
    return None


def scoring_features(events: DataFrame, segment: SegmentDefinition, as_of: datetime,
                     feature_columns: Sequence[str]) -> DataFrame:
    """Eligible users at snapshot `as_of` with exactly the model's feature columns (user_id first)."""


    history = events.where(F.col("event_time") < F.lit(as_of))
    event_counts, valued_events = event_profile(history)
    spec = feature_spec_for(segment, event_counts, valued_events)
    missing = sorted(set(feature_columns) - set(spec_columns(spec)))
    snapshots = snapshot_frame(events.sparkSession, [as_of])
    population = eligible_population(history, snapshots, segment.eligible)
    features = build_features(history, snapshots, spec).join(
        population, on=["snapshot_time", "user_id"], how="inner"
    )
    # An event type the model knew but this night's history lacks is a column of "never happened".
    return features.select(
        "user_id", *[F.col(c) if c not in missing else F.lit(None).cast("double").alias(c) for c in feature_columns]
    )


def threshold_rows(spark: SparkSession, curve_run_id: str, scored: DataFrame, segment: str, run_date: date,
                   model_version: int) -> DataFrame:
    """The held-out curve of the scoring model, with the size each threshold would give tonight."""


    curve = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=curve_run_id,
                                                            artifact_path="threshold_curve.csv"))
    sizes = expected_sizes(scored, [float(t) for t in curve["threshold"]])
    rows = [
        (run_date, segment, model_version, i, float(r.threshold), float(r.precision), float(r.precision_lower),
         float(r.recall), int(r.members), int(sizes[i]))
        for i, r in enumerate(curve.itertuples(index=False))
    ]
    return spark.createDataFrame(rows, THRESHOLDS_SCHEMA)


THRESHOLDS_SCHEMA = (
    "run_date date, segment string, model_version int, point int, threshold double, expected_precision double, "
    "precision_lower double, expected_recall double, holdout_members long, expected_size_today long"
)


def run_segment(spark: SparkSession, cfg: AppConfig, segment: SegmentDefinition, prepared: PreparedEvents,
                run_date: date, retrain: str):  # -> SegmentResult
    """One segment's night. Any exception becomes a `failed` status; the other segments go on."""


    timer = timer_for(log, segment.name, run_date)
    result = SegmentResult(segment=segment.name, run_date=run_date, precision_level=segment.level_name(),
                           events_version=prepared.version)
    try:
        with timer.stage("champion"):
            champion = tracking.load_champion(cfg.mlflow, segment.name)
            previous = night_checks.last_night(spark, cfg, segment.name, run_date)
        triggers = retrain_triggers(previous.score_psi, cfg.nightly.score_psi_retrain, previous.precision_flag,
                                    cfg.nightly.backtest_flag_nights)
        why = retrain_decision(champion.trained_run_date if champion else None, run_date,
                               segment.training.retrain_every.days, retrain, triggers,
                               tracking.last_trained_run_date(cfg.mlflow, segment.name))
        trained_version: str | None = None
        if why is not None:
            log.info("[%s %s] training: %s", segment.name, run_date, why)
            with timer.stage("train"):
                outcome = train_segment(spark, cfg, segment, prepared.events, run_date, prepared.version,
                                        force=retrain == "always")
            result.retrained, result.retrain_reason = outcome.status != "reused", why
            if outcome.status == TRAINING_SKIPPED:
                result.status, result.reason = STATUS_SKIPPED, outcome.reason
                result.stage_seconds = dict(timer.durations)
                return result
            trained_version = outcome.model_version
        model = scoring_model(cfg, segment, run_date, trained_version)
        if model is None:
            result.status = STATUS_SKIPPED
            result.reason = "no model trained for this run date or earlier; run with --retrain auto or always"
            result.stage_seconds = dict(timer.durations)
            return result

        levels = {**cfg.precision_levels, segment.level_name(): segment.promised_precision(cfg.precision_levels)}
        ctx = ScoringContext(
            segment=segment.name, run_date=run_date, segment_level=segment.level_name(),
            levels=level_thresholds(levels, model.thresholds), model_name=model.model_name,
            model_version=int(model.version), mlflow_run_id=model.run_id, control_share=cfg.nightly.control_share,
        )
        with timer.stage("features"):
            features = scoring_features(prepared.events, segment, snapshot_time(run_date),
                                        model.feature_columns).persist()
        with timer.stage("score"):
            pipeline = mlflow.spark.load_model(model.model_uri)
            scored = pipeline.transform(features).select("user_id", "score").persist()
            membership = membership_rows(scored, ctx)
        with timer.stage("stability"):
            before = night_checks.previous_membership(spark, cfg, segment.name, run_date)
        with timer.stage("write membership"):
            tables.write_output(
                membership, cfg, tables.SEGMENT_MEMBERSHIP, {"segment": segment.name, "run_date": run_date},
                partition_by=("segment", "run_date"),
                description="Predictive segment membership: one row per scored eligible user per night.",
            )
        with timer.stage("write thresholds"):
            curve = threshold_rows(spark, model.run_id, scored, segment.name, run_date, int(model.version))
            tables.write_output(curve, cfg, tables.SEGMENT_THRESHOLDS,
                                {"segment": segment.name, "run_date": run_date}, partition_by=("run_date",),
                                description="Held-out precision/recall/size curve of the scoring model.")
        written = tables.read_output(spark, cfg, tables.SEGMENT_MEMBERSHIP)
        tonight = written.where((written.segment == segment.name) & (written.run_date == run_date))
        counts = count_members(tonight, [lv for lv in ("high", "medium", "low") if lv in cfg.precision_levels])
        if before is not None:  # the first night has nothing to churn against: left null
            with timer.stage("stability"):
                churn = membership_churn(before, tonight)
                result.membership_entered, result.membership_exited = churn.entered, churn.exited
                result.membership_jaccard = churn.jaccard
        with timer.stage("drift"):
            drifted = night_checks.drift(model.run_id, features, scored)
            night_checks.log_drift(model.run_id, run_date, drifted)
            result.score_psi, result.top_drifting_features = drifted.score_psi, drifted.top_features
            tables.write_output(
                night_checks.drift_rows(spark, segment.name, run_date, int(model.version), drifted), cfg,
                tables.SEGMENT_DRIFT, {"segment": segment.name, "run_date": run_date}, partition_by=("run_date",),
                description="PSI of the score and the model's top features: holdout snapshot vs tonight.")
        with timer.stage("backtest"):
            result.precision_flag = night_checks.write_backtest(spark, cfg, prepared.events, segment, run_date)
        scored.unpersist()
        features.unpersist()
        result.eligible_count, result.member_count = counts["eligible"], counts["members"]
        result.control_count = counts["control"]
        result.members_by_level = {lv: counts[lv] for lv in ("high", "medium", "low") if lv in counts}
        result.thresholds = dict(model.thresholds)
        result.threshold = model.thresholds.get(segment.level_name())
        result.model_name, result.model_version, result.mlflow_run_id = (
            model.model_name, int(model.version), model.run_id)
        result.holdout_auc_pr = model.holdout_auc_pr
        if counts["eligible"] == 0:
            # Not an error (a campaign's population can empty out), but not "ok" either: BI shows no rows.
            result.status = STATUS_NO_ELIGIBLE
            result.reason = (f"no user is in the eligible population at {run_date} "
                             f"(eligible: {segment.eligible.describe()}); the membership slice is empty")
        elif result.threshold is None:
            result.status = STATUS_UNREACHABLE
            result.reason = (f"no threshold reaches precision {levels[segment.level_name()]:.2f} with "
                             f"{cfg.nightly.confidence:.0%} confidence on the holdout; membership at this level "
                             "is empty (see segment_thresholds for the achievable curve)")
        else:
            result.status = STATUS_OK
        result.stage_seconds = dict(timer.durations)
        return result
    except Exception as exc:
        return failed_result(segment, run_date, exc, timer)


def before_history(segment: SegmentDefinition, prepared: PreparedEvents, run_date: date):  # -> SegmentResult | None
    """A `skipped` result for a night that starts before the first event (nothing to train on or score), else None."""
    first = as_utc(prepared.first_time)
    if first < as_utc(snapshot_time(run_date)):
        return None
    return SegmentResult(
        segment=segment.name, run_date=run_date, status=STATUS_SKIPPED, precision_level=segment.level_name(),
        events_version=prepared.version,
        reason=f"run date {run_date} is before the events' history (first event {first:%Y-%m-%d %H:%M} UTC)",
    )


def run_night(spark: SparkSession, cfg: AppConfig, segments: Sequence[SegmentDefinition], prepared: PreparedEvents,
              run_date: date, retrain: str) -> list:  # -> list[SegmentResult], in the order of `segments`
    """Every segment of one night, `nightly.parallel_segments` at a time.

    Segments share nothing but the persisted events and the output tables, whose writes replace
    disjoint (segment, date) slices and retry Delta's optimistic-concurrency conflicts; MLflow keeps
    the active run per thread. A segment's failure stays its own (`run_segment` never raises).
    """

    def one(segment: SegmentDefinition):
        return before_history(segment, prepared, run_date) or run_segment(spark, cfg, segment, prepared, run_date,
                                                                           retrain)

    workers = min(cfg.nightly.parallel_segments, len(segments))
    if workers <= 1:
        return [one(s) for s in segments]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="segment") as pool:
        return list(pool.map(one, segments))


def run_job(cfg: AppConfig, dates: Sequence[date], segment_names: str | None, retrain: str,
            check_only: bool = False) -> int:
    """Run every night in `dates` for the chosen segments; print a summary; return the exit code."""
    # Membership must name the model that produced it: without a tracking store, stop before any work.
    refusal = tracking_store_refusal(cfg.mlflow)
    if refusal is not None:
        log.error("%s", refusal)
        return 2
    job_timer = StageTimer(log)
    with job_timer.stage("session"):
        spark = build_session(cfg.spark)
    log.info("Spark %s, master=%s, events at %s", spark.version, spark.sparkContext.master, cfg.events.path)
    uri = configure_mlflow(cfg.mlflow)
    try:
        if not check_only:  # an unwritable output location fails now, not after a night of training
            tables.ensure_output_root(cfg)
        with job_timer.stage("events"):
            prepared = prepare_events(spark, cfg, max(dates))
        segments = select_segments(
            load_segments(cfg.segments_file, cfg.precision_levels, known_events=set(prepared.event_counts),
                          history=(prepared.first_time, prepared.last_time)),
            segment_names,
        )
    except (JobError, SegmentConfigError, EventSchemaError, TooManyRejectedError, tables.TableError) as exc:
        log.error("%s", exc)
        return 2
    if check_only:
        from segments_lib.language.dry_run import EventsHistory, check_segment, format_report
        from segments_lib.language.eligibility import as_utc

        history = EventsHistory(as_utc(prepared.first_time), as_utc(prepared.last_time), prepared.event_counts)
        checks = [check_segment(prepared.events, s, max(dates), history) for s in segments]
        print(format_report(checks))
        return 0 if all(c.ok for c in checks) else 1

    all_results = []
    for run_date in dates:
        with job_timer.stage(f"night {run_date}"):
            results = run_night(spark, cfg, segments, prepared, run_date, retrain)
            write_runs(spark, cfg, results)
        all_results.extend(results)
        print(f"\nNight {run_date}\n" + summary_table(results, mask_uri(uri)), flush=True)
    tables.register_views(spark, cfg)
    prepared.events.unpersist()
    failed = [r for r in all_results if r.status == STATUS_FAILED]
    log.info("done in %.1fs: %d segment-nights, %d failed; tables in %s", job_timer.total, len(all_results),
             len(failed), cfg.output.root)
    return 1 if failed else 0
