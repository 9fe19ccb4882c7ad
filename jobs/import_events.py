"""Import events: map the configured source onto the events contract, validate it, and write the valid
rows to the validated events table (`events.validated_path`), one day range at a time.

    python -m jobs.import_events --conf local --from 2026-01-01 --to 2026-06-01   # days 01-01 .. 06-01
    python -m jobs.import_events --conf local                                     # the whole source

Days are UTC `event_date`s, both ends included; an omitted --from starts at the source's first event
(and also quarantines rows without a readable time), an omitted --to ends at its newest. Every imported
day replaces that day in the table (replaceWhere), so a re-run, or an overlapping range, replaces rows
and never duplicates them. Rejected rows go to the quarantine (`quarantine_path`) with their reason,
in the slice `run_date` = the import's day (UTC, or --run-date). The nightly job keeps the table up to
date by itself (new days plus `events.late_days`); this command is for the first load and backfills.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

if __package__ in (None, ""):  # spark-submit runs this file as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.options import EXIT_FAILED, EXIT_INVALID, EXIT_OK, iso_date, job_parser
from segments_lib.config import ConfigError, load_config
from segments_lib.intake.events import (
    DUPLICATES_REMOVED,
    REASONS,
    EventSchemaError,
    TooManyRejectedError,
    rejected_share,
)
from segments_lib.job.runner import ImportSummary, JobError, day_range_text, import_days
from segments_lib.progress import StageTimer, configure_logging
from segments_lib.store import tables, validated
from segments_lib.store.session import EnvironmentProblem, build_session

log = logging.getLogger("jobs.import_events")

EXIT_CODES = {
    EXIT_OK: "the days were imported (rejected rows, if any, are in the quarantine and counted in the summary)",
    EXIT_FAILED: "a write failed part-way: the chunks logged as done are whole; re-run the same command",
    EXIT_INVALID: "bad arguments or config, a missing or unreadable source, a column that does not map, or "
                  "more rejected rows than events.max_rejected_share allows among the rows read so far (nothing of "
                  "that chunk written); "
                  "one line says which",
}
DEFAULT_CHUNK_DAYS = 31


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, found {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = job_parser(__doc__, "jobs.import_events", EXIT_CODES)
    parser.add_argument("--from", dest="date_from", metavar="DATE", type=iso_date, default=None,
                        help="first day to import, YYYY-MM-DD (default: the source's first event)")
    parser.add_argument("--to", dest="date_to", metavar="DATE", type=iso_date, default=None,
                        help="last day to import, included (default: the source's newest event)")
    parser.add_argument("--chunk-days", type=_positive, default=DEFAULT_CHUNK_DAYS,
                        help=f"days validated and written per step; each logs its time (default: {DEFAULT_CHUNK_DAYS})")
    parser.add_argument("--run-date", type=iso_date, default=None,
                        help="the quarantine slice the rejects go to (default: today, UTC)")
    args = parser.parse_args(argv)
    if args.date_from is not None and args.date_to is not None and args.date_from > args.date_to:
        parser.error(f"--from {args.date_from} is after --to {args.date_to}")
    return args


def summary_text(summary: ImportSummary, cfg, profile: validated.HistoryProfile, seconds: float,
                 run_date: date) -> str:
    """The human-readable end of an import: what was read, kept, removed and quarantined, and the table."""
    counts = summary.counts
    rejected = sum(counts.get(r, 0) for r in REASONS)
    lines = [
        f"Imported {day_range_text(summary.first_day, summary.end_day)} in {summary.chunks} chunk(s), "
        f"{seconds:.1f}s",
        f"  source          {summary.source}",
        f"  rows read       {counts.get('total', 0):,}",
        f"  valid           {counts.get('valid', 0):,}",
        f"  duplicates      {counts.get(DUPLICATES_REMOVED, 0):,} removed",
        f"  quarantined     {rejected:,} ({rejected_share(counts):.2%})"
        + (f" to {tables.quarantine_path(cfg)}, run_date {run_date}" if rejected else ""),
    ]
    lines += [f"    {reason:<15} {counts.get(reason, 0):,}" for reason in REASONS if counts.get(reason, 0)]
    if profile.first_day is not None:
        lines.append(f"  validated table {validated.events_location(cfg)}: {profile.days} days from "
                     f"{profile.first_day} to {profile.newest_day}, {sum(profile.event_counts.values()):,} events")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(argv)
    try:
        cfg = load_config(args.conf)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_INVALID
    run_date = args.run_date or datetime.now(timezone.utc).date()
    end_day = args.date_to + timedelta(days=1) if args.date_to else None
    timer = StageTimer(log)
    started = time.perf_counter()
    try:
        with timer.stage("session"):
            spark = build_session(cfg.spark)
        summary = import_days(spark, cfg, args.date_from, end_day, run_date, args.chunk_days, timer)
        profile = validated.read_profile(spark, cfg)
    except (EnvironmentProblem, JobError, EventSchemaError, TooManyRejectedError, tables.TableError) as exc:
        log.error("%s", exc)
        return EXIT_INVALID
    except Exception:
        log.exception("import failed part-way; the chunks logged as done are written, re-run the same command")
        return EXIT_FAILED
    print(summary_text(summary, cfg, profile, time.perf_counter() - started, run_date), flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
