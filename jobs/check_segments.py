"""Dry run: can each segment be built from the events table? Prints a table; exit 1 when one cannot.

    python -m jobs.check_segments --conf local --date 2026-06-01 [--segments a,b] [--segments-file PATH]

--conf and --segments-file resolve as in the nightly job: a path first (relative to the current
directory); a bare --conf name is ./conf/<name>.yaml, else the shipped one.
Without --date, the run date is the day after the newest event's day: the night that comes right after
the newest day in the events, taken to be complete (a nightly export runs after midnight), so the
check uses all of them. Pass --date when the newest day is still filling up.
"""

from __future__ import annotations

import logging
import sys
from datetime import date, datetime, timedelta, timezone

from pyspark.sql import DataFrame, SparkSession

from jobs.options import EXIT_FAILED, EXIT_INVALID, EXIT_OK, job_parser
from segments_lib.config import AppConfig, ConfigError, load_config, segments_file_override, suggest
from segments_lib.intake.events import ValidationRules, conform_events, format_counts, validate
from segments_lib.job.runner import JobError, read_source_events
from segments_lib.language.definitions import SegmentDefinition

log = logging.getLogger("jobs.check_segments")


class CheckError(RuntimeError):
    """The check cannot run at all; the message says why."""


def read_events(spark: SparkSession, cfg: AppConfig) -> DataFrame:
    """Conformed, valid events (invalid rows are counted and left out; the nightly job quarantines them)."""
    try:
        raw, _ = read_source_events(spark, cfg)
    except JobError as exc:
        raise CheckError(str(exc)) from exc
    conformed = conform_events(raw, cfg.events)
    result = validate(conformed, datetime.now(timezone.utc), ValidationRules.from_config(cfg.events))
    if result.counts["total"] and result.rejected_count == result.counts["total"]:
        raise CheckError(f"none of the {result.counts['total']} events at {cfg.events.path} is valid "
                         f"({format_counts(result.counts)}): check the events.columns mapping, events.time_format "
                         "and events.time_unit (docs/sources.md)")
    if result.rejected_count:
        log.warning("events: %d rows left out of the check (%s)", result.rejected_count, format_counts(result.counts))
    return result.valid.cache()


def default_run_date(newest_event: datetime) -> date:
    """The night right after the newest event's (UTC) day: a night on D reads events before D 00:00, so
    this one reads every day there is. Today's date would be wrong for any export that is not live."""
    return newest_event.astimezone(timezone.utc).date() + timedelta(days=1)


def choose(segments: tuple[SegmentDefinition, ...], wanted: str | None) -> list[SegmentDefinition]:
    if not wanted:
        return list(segments)
    known = {s.name: s for s in segments}
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        hints = "; ".join(f"'{n}'{suggest(n, list(known))}" for n in unknown)
        raise CheckError(f"--segments names unknown segment(s) {hints}; defined: {', '.join(known)}")
    return [known[n] for n in names]


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__, "jobs.check_segments", {
        EXIT_OK: "every segment can be built",
        EXIT_FAILED: "at least one segment cannot be built (the reasons are printed)",
        EXIT_INVALID: "the config, the segments file or the events source is invalid, or the environment is "
                      "(no Java, JARs that cannot be resolved)",
    }, conf_help="config overlay: a path, or a name in conf/ (default: local)", conf_default="local")
    parser.add_argument("--date", type=date.fromisoformat, default=None,
                        help="run date D, YYYY-MM-DD (default: the day after the newest event's day)")
    parser.add_argument("--segments", default=None, help="comma-separated segment names (default: all)")
    parser.add_argument("--segments-file", default=None,
                        help="segment definitions (default: segments_file in config)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from segments_lib.language.dry_run import check_segment, events_history, format_report
    from segments_lib.language.segment_config import load_segments
    from segments_lib.store.session import EnvironmentProblem, build_session

    try:
        cfg = load_config(args.conf, overrides=segments_file_override(args.segments_file))
        spark = build_session(cfg.spark, app_name="check-segments")
        events = read_events(spark, cfg)
        history = events_history(events)
        segments = load_segments(cfg.segments_file, cfg.precision_levels,
                                 known_events=history.event_counts, history=history.span)
        chosen = choose(segments, args.segments)
    except (ConfigError, CheckError, ValueError, EnvironmentProblem) as exc:
        print(f"check_segments: {exc}", file=sys.stderr)
        return EXIT_INVALID
    run_date = args.date or default_run_date(history.last)
    print(f"run date {run_date}" + ("" if args.date else " (the day after the newest event's day; --date to choose)"))
    print(f"events: {sum(history.event_counts.values())} rows, {len(history.event_counts)} event names, "
          f"{history.first:%Y-%m-%d %H:%M} to {history.last:%Y-%m-%d %H:%M} UTC")
    # One small Spark action per segment: each has its own snapshot, eligibility and target.
    results = [check_segment(events, segment, run_date, history) for segment in chosen]
    print(format_report(results))
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
