"""The job driver behind `jobs.nightly`: session, events, then every night and segment in order.

Kept out of `jobs/` so that the demo, the tests and the notebooks drive exactly the same code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timezone

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from segments_lib.config import AppConfig, suggest
from segments_lib.intake.events import (
    EventSchemaError,
    TooManyRejectedError,
    ValidationRules,
    check_rejected_share,
    conform_events,
    format_counts,
    validate,
)
from segments_lib.job import stages
from segments_lib.job.results import (
    STATUS_FAILED,
    STATUS_SKIPPED,
    SegmentResult,
    failed_result,
    snapshot_time,
    summary_table,
    write_runs,
)
from segments_lib.job.stages import Night, PreparedEvents
from segments_lib.job.stages import retrain_decision as retrain_decision  # re-exported: tests and docs use it here
from segments_lib.language.definitions import SegmentDefinition
from segments_lib.language.dry_run import EventsHistory, check_segment, format_report
from segments_lib.language.eligibility import as_utc
from segments_lib.language.segment_config import SegmentConfigError, load_segments
from segments_lib.progress import StageTimer
from segments_lib.store import tables
from segments_lib.store.session import build_session
from segments_lib.store.sources import SourceError, read_events_source
from segments_lib.store.store_check import mask_uri, tracking_store_refusal
from segments_lib.store.tracking import configure_mlflow

log = logging.getLogger(__name__)


class JobError(RuntimeError):
    """The job cannot run at all (no events table, bad segment config); the message says why."""


def read_source_events(spark: SparkSession, cfg: AppConfig) -> tuple[DataFrame, int | None]:
    """The configured events source and its Delta version (None for other formats); a missing or
    unreachable source is a JobError naming events.path (events.table, events.jdbc.url)."""
    try:
        source = read_events_source(spark, cfg.events)
    except SourceError as exc:
        raise JobError(str(exc)) from exc
    return source.frame, source.version


def prepare_events(spark: SparkSession, cfg: AppConfig, quarantine_date: date) -> PreparedEvents:
    """Read, conform and validate the events once per job; quarantine the rejects; persist the rest."""
    raw, version = read_source_events(spark, cfg)
    conformed = conform_events(raw, cfg.events)  # columns, time format/unit and zone rules
    # Validation's as-of is the wall clock: an event stamped later than now is a data error, while
    # events after a backfilled run date are legitimate history for that night's labels.
    result = validate(conformed, datetime.now(timezone.utc), ValidationRules.from_config(cfg.events),
                      run_date=quarantine_date, storage_level=StorageLevel.MEMORY_AND_DISK)
    log.info("events v%s: %s valid of %s; %s", version, result.counts["valid"], result.counts["total"],
             format_counts(result.counts))
    check_rejected_share(result, cfg.events.max_rejected_share)
    if result.rejected_count:
        tables.replace_partition(result.rejected, tables.quarantine_path(cfg), {"run_date": quarantine_date},
                                 partition_by=("run_date",))
    events = result.valid  # a filter over the persisted tagged rows: every segment reads it
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
        cached=result.tagged,
    )


def select_segments(all_segments: Sequence[SegmentDefinition], wanted: str | None) -> list[SegmentDefinition]:
    if not wanted:
        return list(all_segments)
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    known = {s.name: s for s in all_segments}
    unknown = [n for n in names if n not in known]
    if unknown:
        hints = "; ".join(f"'{n}'{suggest(n, list(known))}" for n in unknown)
        raise JobError(f"--segments names unknown segment(s) {hints}; defined: {', '.join(known)}")
    return [known[n] for n in names]


def timer_for(logger: logging.Logger, segment: str, run_date: date) -> StageTimer:
    return StageTimer(logger, prefix=f"[{segment} {run_date}] ")


def run_segment(spark: SparkSession, cfg: AppConfig, segment: SegmentDefinition, prepared: PreparedEvents,
                run_date: date, retrain: str) -> SegmentResult:
    """One segment's night: decide → (train) → features → score → write → checks, then one SegmentResult.

    Any exception becomes a `failed` status; the other segments go on.
    """
    night = Night(spark, cfg, segment, prepared, run_date, retrain, timer_for(log, segment.name, run_date))
    try:
        training = stages.train(night, stages.decide(night))
        if training.skipped is not None:
            return stages.stopped_result(night, training, STATUS_SKIPPED, training.skipped)
        model = stages.scoring_model(night, training)
        if model is None:
            return stages.stopped_result(night, training, STATUS_SKIPPED, stages.NO_MODEL_REASON)
        features = stages.featurize(night, model)
        scored = stages.score_night(night, model, features)
        written = stages.write_night(night, model, scored)
        checked = stages.check_night(night, model, features, scored, written)
        scored.scores.unpersist()
        features.frame.unpersist()
        return stages.segment_result(night, training, model, written, checked)
    except Exception as exc:
        return failed_result(segment, run_date, exc, night.timer)


def before_history(segment: SegmentDefinition, prepared: PreparedEvents, run_date: date) -> SegmentResult | None:
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
              run_date: date, retrain: str) -> list[SegmentResult]:
    """Every segment of one night, `nightly.parallel_segments` at a time.

    Segments share nothing but the persisted events and the output tables, whose writes replace
    disjoint (segment, date) slices and retry Delta's optimistic-concurrency conflicts; MLflow keeps
    the active run per thread. A segment's failure stays its own (`run_segment` never raises). The
    results come in the order of `segments`.
    """

    def one(segment: SegmentDefinition) -> SegmentResult:
        return before_history(segment, prepared, run_date) or run_segment(spark, cfg, segment, prepared, run_date,
                                                                           retrain)

    workers = min(cfg.nightly.parallel_segments, len(segments))
    if workers <= 1:
        return [one(s) for s in segments]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="segment") as pool:
        return list(pool.map(one, segments))


def dry_run(prepared: PreparedEvents, segments: Sequence[SegmentDefinition], run_date: date) -> int:
    """`--check`: print whether each segment can be built at `run_date`; 0 when all can, else 1."""
    history = EventsHistory(as_utc(prepared.first_time), as_utc(prepared.last_time), prepared.event_counts)
    checks = [check_segment(prepared.events, s, run_date, history) for s in segments]
    print(format_report(checks))
    return 0 if all(c.ok for c in checks) else 1


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
            tables.ensure_output_root(spark, cfg)
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
        return dry_run(prepared, segments, max(dates))

    all_results = []
    for run_date in dates:
        with job_timer.stage(f"night {run_date}"):
            results = run_night(spark, cfg, segments, prepared, run_date, retrain)
            write_runs(spark, cfg, results)
        all_results.extend(results)
        print(f"\nNight {run_date}\n" + summary_table(results, mask_uri(uri)), flush=True)
    tables.register_views(spark, cfg)
    prepared.release()
    failed = [r for r in all_results if r.status == STATUS_FAILED]
    log.info("done in %.1fs: %d segment-nights, %d failed; tables in %s", job_timer.total, len(all_results),
             len(failed), cfg.output.root)
    return 1 if failed else 0
