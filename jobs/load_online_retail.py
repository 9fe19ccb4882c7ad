"""Load UCI Online Retail into the events contract; bad rows go to the events quarantine.

    python -m jobs.load_online_retail --conf local [--source data/online_retail.parquet] [--events-path PATH]

The valid events replace the table at --events-path (default: `events.path` from the config), partitioned
by event_date. Rejected rows replace this run date's slice of the quarantine table (`quarantine_path`).
The counts per reason are logged and printed. The run fails when the rejected share exceeds
--max-rejected-share (after writing the quarantine, so the rejected rows can be inspected).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import date, datetime, timezone
from pathlib import Path

from jobs.options import EXIT_FAILED, EXIT_INVALID, EXIT_OK, INVALID_MEANING, job_parser
from segments_lib.config import PROJECT_ROOT, ConfigError, load_config
from segments_lib.intake import events, retail
from segments_lib.locations import Location
from segments_lib.progress import StageTimer, configure_logging
from segments_lib.store import tables
from segments_lib.store.session import EnvironmentProblem, build_session

log = logging.getLogger("jobs.load_online_retail")
DEFAULT_SOURCE = PROJECT_ROOT / "data" / "online_retail.parquet"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = job_parser(__doc__, "jobs.load_online_retail", {
        EXIT_OK: "the events were written",
        EXIT_FAILED: "more rows were rejected than --max-rejected-share allows (the quarantine was written)",
        EXIT_INVALID: INVALID_MEANING,
    })
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="Online Retail Parquet file")
    parser.add_argument("--events-path", type=Location.parse, default=None,
                        help="events Delta table, a path or a URI (default: events.path)")
    parser.add_argument("--run-date", type=date.fromisoformat, default=None,
                        help="run date, YYYY-MM-DD (default: today, UTC); events after its midnight are future")
    parser.add_argument("--max-rejected-share", type=float, default=retail.RETAIL_MAX_REJECTED_SHARE,
                        help="fail above this share of quarantined rows (the data set lacks customers on ~25%%)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(argv)
    try:
        cfg = load_config(args.conf)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_INVALID
    run_date = args.run_date or datetime.now(timezone.utc).date()
    as_of = datetime(run_date.year, run_date.month, run_date.day, tzinfo=timezone.utc)
    events_path = args.events_path or tables.events_path(cfg)
    quarantine_path = tables.quarantine_path(cfg)
    rules = events.ValidationRules(
        dedup_key=retail.RETAIL_DEDUP_KEY,
        allow_negative_values=cfg.events.allow_negative_values,
        max_rejected_share=args.max_rejected_share,
    )
    timer = StageTimer(log)
    try:
        spark = build_session(cfg.spark, app_name="load-online-retail")
    except EnvironmentProblem as exc:  # no Java, Delta JARs that cannot be resolved: the job cannot start
        log.error("%s", exc)
        return EXIT_INVALID

    with timer.stage(f"read {args.source} and validate"):
        raw = retail.retail_to_events(spark.read.parquet(str(args.source)))
        conformed = events.conform(raw, retail.RETAIL_COLUMNS, retail.RETAIL_TIMEZONE).persist()
        result = events.validate(conformed, as_of, rules, run_date=run_date)
    log.info("validation counts: %s", events.format_counts(result.counts, (*result.counts,)))
    with timer.stage(f"write quarantine slice run_date={run_date} to {quarantine_path}"):
        tables.replace_partition(result.rejected, quarantine_path, {events.RUN_DATE: run_date},
                                 partition_by=[events.RUN_DATE])
    try:
        events.check_rejected_share(result, rules.max_rejected_share)
    except events.TooManyRejectedError as exc:
        log.error("%s; the rejected rows are in %s", exc, quarantine_path)
        return EXIT_FAILED
    with timer.stage(f"write {result.counts['valid']} events to {events_path}"):
        tables.overwrite_table(result.valid, events_path, partition_by=[events.EVENT_DATE])
    conformed.unpersist()
    print(json.dumps(result.counts, indent=2))
    log.info("done in %.1fs", timer.total)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
