"""Dry run: can each segment be built from the events table? Prints a table; exit 1 when one cannot.

    python -m jobs.check_segments --conf local --date 2026-06-01 [--segments a,b] [--segments-file PATH]

--conf and --segments-file resolve as in the nightly job: a path first (relative to the current
directory); a bare --conf name is ./conf/<name>.yaml, else the shipped one.

Exit codes: 0 every segment can be built, 1 at least one cannot (the reasons are printed),
2 the config, the segment file or the events table is invalid, or the environment is (no Java, Delta
JARs that cannot be resolved).
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date, datetime, timezone

from pyspark.sql import DataFrame, SparkSession

from segments_lib.config import AppConfig, ConfigError, load_config, segments_file_override, suggest
from segments_lib.intake.events import ValidationRules, conform, format_counts, validate
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
    conformed = conform(raw, cfg.events.columns, cfg.events.source_timezone)
    result = validate(conformed, datetime.now(timezone.utc), ValidationRules.from_config(cfg.events))
    if result.rejected_count:
        log.warning("events: %d rows left out of the check (%s)", result.rejected_count, format_counts(result.counts))
    return result.valid.cache()


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
    parser = argparse.ArgumentParser(prog="jobs.check_segments", description=__doc__.split("\n\n")[0])
    parser.add_argument("--conf", default="local",
                        help="config overlay: a path, or a name in conf/ (default: local)")
    parser.add_argument("--date", type=date.fromisoformat, default=None,
                        help="run date D, YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--segments", default=None, help="comma-separated segment names (default: all)")
    parser.add_argument("--segments-file", default=None,
                        help="segment definitions (default: segments_file in config)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from segments_lib.language.dry_run import check_segment, events_history, format_report
    from segments_lib.language.segment_config import load_segments
    from segments_lib.store.session import EnvironmentProblem, build_session

    run_date = args.date or datetime.now(timezone.utc).date()
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
        return 2
    print(f"events: {sum(history.event_counts.values())} rows, {len(history.event_counts)} event names, "
          f"{history.first:%Y-%m-%d %H:%M} to {history.last:%Y-%m-%d %H:%M} UTC")
    # One small Spark action per segment: each has its own snapshot, eligibility and target.
    results = [check_segment(events, segment, run_date, history) for segment in chosen]
    print(format_report(results))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
