"""The job driver behind `jobs.nightly`: session, events, then every night and segment in order.

Kept out of `jobs/` so that the demo, the tests and the notebooks drive exactly the same code.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone

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
from segments_lib.language.snapshots import midnight_utc
from segments_lib.language.windows import day_chunks, refresh_from, training_window
from segments_lib.progress import StageTimer
from segments_lib.store import tables, validated
from segments_lib.store.session import build_session
from segments_lib.store.sources import SourceError, SourceEvents, damaged_files_named, read_events_source
from segments_lib.store.store_check import mask_uri, store_down_reason, tracking_store_refusal
from segments_lib.store.tracking import configure_mlflow

log = logging.getLogger(__name__)


class JobError(RuntimeError):
    """The job cannot run at all (no events table, bad segment config); the message says why."""


def read_source_events(spark: SparkSession, cfg: AppConfig) -> tuple[DataFrame, int | None]:
    """The configured events source and its Delta version (None for other formats); a missing,
    unreachable or damaged source is a JobError naming events.path (events.table, events.jdbc.url)."""
    with source_errors(cfg):
        source = read_events_source(spark, cfg.events)
    return source.frame, source.version


@contextmanager
def source_errors(cfg: AppConfig) -> Iterator[None]:
    """Around anything that reads the source, its actions included (Spark reads lazily, so a damaged file
    fails the first count or write that touches it): a missing, unreachable or damaged source is a
    JobError naming the config key, and the file when one is damaged."""
    try:
        with damaged_files_named(cfg.events):
            yield
    except SourceError as exc:
        raise JobError(str(exc)) from exc


@dataclass(frozen=True)
class ImportSummary:
    """What one import (or a night's refresh) of the validated events did."""
    first_day: date | None  # the first day replaced; None: from the source's first event
    end_day: date | None  # the day after the last one replaced; None: up to the source's newest event
    counts: dict[str, int]  # per reason, duplicates_removed, total, valid: summed over the chunks
    source_version: int | None  # Delta version of the source read, else None
    chunks: int
    source: str = ""  # the source's description (no secrets)


def narrowed(conformed: DataFrame, since: datetime | None, until: datetime | None) -> DataFrame:
    """Conformed events with since ≤ event_time < until. An open start keeps rows without a time: they
    belong to no day, so only an import from the source's beginning quarantines them (once)."""
    time = F.col("event_time")
    condition = F.lit(True)
    if since is not None:
        condition &= time >= F.lit(since)
    if until is not None:
        condition &= (time < F.lit(until)) if since is not None else (time < F.lit(until)) | time.isNull()
    return conformed.where(condition)


def _midnight(day: date | None) -> datetime | None:
    return midnight_utc(day) if day is not None else None


def conformed_source(spark: SparkSession, cfg: AppConfig, first_day: date | None,
                     end_day: date | None) -> tuple[DataFrame, SourceEvents]:
    """The source's rows of the days [first_day, end_day) in the events contract, exactly (the source's
    own narrowing is a superset); a missing source is a JobError naming the config key."""
    with source_errors(cfg):
        source = read_events_source(spark, cfg.events, _midnight(first_day), _midnight(end_day))
    conformed = conform_events(source.frame, cfg.events)
    return narrowed(conformed, _midnight(first_day), _midnight(end_day)), source


def import_chunks(spark: SparkSession, cfg: AppConfig, first_day: date | None, end_day: date | None,
                  chunk_days: int | None) -> list[tuple[date | None, date | None]]:
    """The day ranges an import validates and writes one at a time, oldest first. An open outer bound
    stays open, so rows before the first or after the last source day (or without a time) are kept;
    finding the source's days to cut costs one min/max over the asked range."""
    if chunk_days is None:
        return [(first_day, end_day)]
    conformed, _ = conformed_source(spark, cfg, first_day, end_day)
    with source_errors(cfg):
        row = conformed.agg(F.min("event_date").alias("lo"), F.max("event_date").alias("hi")).first()
    if row is None or row["lo"] is None:
        return [(first_day, end_day)]
    # Cut no further than today: later rows are future events (quarantined), and a row stamped in 2100
    # must not turn into thousands of empty chunks. The last chunk stays open-ended, so they are still read.
    today = datetime.now(timezone.utc).date()
    lo = first_day or min(row["lo"], today)
    hi = end_day or min(row["hi"], today) + timedelta(days=1)
    chunks: list[tuple[date | None, date | None]] = list(day_chunks(lo, hi, chunk_days)) or [(first_day, end_day)]
    chunks[0] = (first_day, chunks[0][1])
    chunks[-1] = (chunks[-1][0], end_day)
    return chunks


def _summed(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in {*a, *b}}


def day_range_text(first_day: date | None, end_day: date | None) -> str:
    """'2026-05-01 .. 2026-05-31' for the half-open [05-01, 06-01); open ends named."""
    start = f"{first_day}" if first_day else "the first event"
    end = f"{end_day - timedelta(days=1)}" if end_day else "the newest event"
    return f"{start} .. {end}"


def import_days(spark: SparkSession, cfg: AppConfig, first_day: date | None, end_day: date | None,
                quarantine_date: date, chunk_days: int | None = None, timer: StageTimer | None = None
                ) -> ImportSummary:
    """Validate the source's days [first_day, end_day) and replace them in the validated table.

    Each chunk of days is read (narrowed at the source where it can be), conformed, validated
    (duplicates removed, bad rows tagged with a reason), checked against `max_rejected_share` before
    anything of it is written, then written: the valid rows replace those days of the validated table
    and its profile, the rejects those days of the quarantine slice `run_date = quarantine_date`. A
    chunk that fails leaves the earlier chunks whole and written; a re-run replaces the same days with
    the same rows. The rejected share is that of every row read so far, this chunk's included.
    """
    timer = timer or StageTimer(log)
    # Validation's as-of is the wall clock: an event stamped later than now is a data error, while
    # events after a backfilled run date are legitimate history for that night's labels.
    now = datetime.now(timezone.utc)
    rules = ValidationRules.from_config(cfg.events)
    chunks = import_chunks(spark, cfg, first_day, end_day, chunk_days)
    totals: dict[str, int] = {}
    version, description = None, ""
    quarantine_exists = tables.is_delta_table(spark, tables.quarantine_path(cfg))
    for i, (lo, hi) in enumerate(chunks, start=1):
        with timer.stage(f"import {day_range_text(lo, hi)} ({i}/{len(chunks)})"), source_errors(cfg):
            frame, source = conformed_source(spark, cfg, lo, hi)
            version, description = source.version, source.description
            result = validate(frame, now, rules, run_date=quarantine_date, storage_level=StorageLevel.MEMORY_AND_DISK)
            try:
                log.info("%s, %s: %s valid of %s; %s", description, day_range_text(lo, hi), result.counts["valid"],
                         result.counts["total"], format_counts(result.counts))
                # The share is judged over the rows read so far, this chunk included, so a chunk holding
                # only a few odd rows (a future-stamped one, say) does not stop a long import alone.
                check_rejected_share(replace(result, counts=_summed(totals, result.counts)),
                                     cfg.events.max_rejected_share)
                validated.write_days(result.valid, cfg, lo, hi)
                # An empty reject set still replaces these days' slice once a quarantine exists: a source
                # fixed since the last import leaves no stale rejects behind.
                if result.rejected_count or quarantine_exists:
                    validated.write_rejected(result.rejected, cfg, quarantine_date, lo, hi)
                    quarantine_exists = True
            finally:
                result.tagged.unpersist()
        totals = _summed(totals, result.counts)
    return ImportSummary(first_day, end_day, totals, version, len(chunks), description)


def refresh_validated(spark: SparkSession, cfg: AppConfig, quarantine_date: date,
                      timer: StageTimer | None = None) -> ImportSummary:
    """Bring the validated events up to date before a night: the days from the profile's newest day
    minus `events.late_days` onwards are re-read from the source and replaced; older days are kept as
    validated. An empty validated table imports everything the source has: the history profile (first
    event, counts per event name) must describe the whole history, and a segment added later with a
    longer look-back finds it there."""
    newest = validated.read_profile(spark, cfg).newest_day
    start = refresh_from(newest, cfg.events.late_days)
    log.info("validated events %s: %s", validated.events_location(cfg),
             f"newest day {newest}, refreshing from {start}" if newest else "empty, importing the whole source")
    return import_days(spark, cfg, start, None, quarantine_date, timer=timer)


def prepare_events(spark: SparkSession, cfg: AppConfig, quarantine_date: date) -> PreparedEvents:
    """Refresh the validated events (new and late days only), then describe the whole validated history
    from its per-day profile; the stages read only their windows of it (`language.windows`)."""
    summary = refresh_validated(spark, cfg, quarantine_date)
    profile = validated.read_profile(spark, cfg)
    if not profile.event_counts:
        raise JobError(f"events table at {tables.events_path(cfg)} has no valid events")
    log.info("validated history: %s to %s, %d days, %d events", profile.first_time, profile.last_time,
             profile.days, sum(profile.event_counts.values()))
    return PreparedEvents(
        events=validated.read_events(spark, cfg),
        version=summary.source_version,
        counts=summary.counts,
        first_time=profile.first_time,
        last_time=profile.last_time,
        event_counts=profile.event_counts,
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
    store_down = store_down_reason(cfg.mlflow)
    if store_down is not None:
        return from_copy(night, store_down)
    try:
        training = stages.train(night, stages.decide(night))
        if training.skipped is not None:
            return stages.stopped_result(night, training, STATUS_SKIPPED, training.skipped)
        model = stages.scoring_model(night, training)
        if model is None:
            return stages.stopped_result(night, training, STATUS_SKIPPED, stages.NO_MODEL_REASON)
        stages.keep_champion_copy(night, model)
        return stages.score_and_check(night, training, model)
    except Exception as exc:
        # The store may have gone away mid-night: every write so far replaced this night's own slices,
        # so scoring the night again from the champion copy leaves one consistent set of rows.
        store_down = store_down_reason(cfg.mlflow)
        if store_down is None:
            return failed_result(segment, run_date, exc, night.timer)
        log.warning("[%s %s] the night stopped (%s: %s) and the tracking store is down", segment.name, run_date,
                    type(exc).__name__, exc)
        return from_copy(night, store_down)


def from_copy(night: Night, store_down: str) -> SegmentResult:
    """`stages.score_from_copy`, with any failure of it a `failed` result like every other night's."""
    try:
        return stages.score_from_copy(night, store_down)
    except Exception as exc:
        return failed_result(night.segment, night.run_date, exc, night.timer)


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
        skipped = before_history(segment, prepared, run_date)
        return skipped or run_segment(spark, cfg, segment, prepared, run_date, retrain)

    workers = min(cfg.nightly.parallel_segments, len(segments))
    if workers <= 1:
        return [one(s) for s in segments]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="segment") as pool:
        return list(pool.map(one, segments))


def dry_run(prepared: PreparedEvents, segments: Sequence[SegmentDefinition], run_date: date) -> int:
    """`--check`: print whether each segment can be built at `run_date`; 0 when all can, else 1."""
    history = EventsHistory(as_utc(prepared.first_time), as_utc(prepared.last_time), prepared.event_counts)
    checks = [check_segment(validated.in_window(prepared.events, training_window(s, run_date)), s, run_date, history)
              for s in segments]
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
