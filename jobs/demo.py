"""The README's main command: demo events (generated once), then the nightly job in local mode.

    python -m jobs.demo                      # 6,000 users × 100 days (demo.* in conf/base.yaml), run date = 2026-06-01
    python -m jobs.demo --users 200000 --days 120 --fresh   # bigger (regenerates the events)
    python -m jobs.demo --fresh              # regenerate the events even if they exist
"""

from __future__ import annotations

import logging
import sys
from datetime import date

from jobs.options import EXIT_FAILED, EXIT_INVALID, EXIT_OK, INVALID_MEANING, job_parser
from segments_lib.config import ConfigError, load_config
from segments_lib.job.results import RETRAIN_MODES
from segments_lib.progress import configure_logging

log = logging.getLogger("jobs.demo")


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    parser = job_parser(__doc__, "jobs.demo", {
        EXIT_OK: "every segment ended ok, skipped or precision_unreachable",
        EXIT_FAILED: "at least one segment failed (the summary says which and why)",
        EXIT_INVALID: INVALID_MEANING,
    }, conf_help="config overlay: a path, or a name in conf/ (default: local)", conf_default="local")
    parser.add_argument("--users", type=int, default=None, help="demo users (default: demo.users in config)")
    parser.add_argument("--days", type=int, default=None, help="days of history (default: demo.days)")
    parser.add_argument("--fresh", action="store_true", help="regenerate demo events even if present")
    parser.add_argument("--retrain", choices=RETRAIN_MODES, default="auto",
                        help="as in jobs.nightly (default: auto)")
    parser.add_argument("--ground-truth", action="store_true",
                        help="also write the generator's ground truth (for benchmarks/quality.py; ~4 min)")
    args = parser.parse_args(argv)

    try:
        cfg = load_config(args.conf)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_INVALID
    users = args.users or cfg.demo.users
    days = args.days or cfg.demo.days
    run_date = date.fromisoformat(cfg.demo.end_date)

    from jobs import generate_demo_events
    from segments_lib.job.runner import run_job
    from segments_lib.store import tables
    from segments_lib.store.session import EnvironmentProblem, build_session

    try:
        spark = build_session(cfg.spark, app_name="predictive-segments-demo")
    except EnvironmentProblem as exc:  # no Java, Delta JARs that cannot be resolved
        log.error("%s", exc)
        return EXIT_INVALID
    if args.fresh or not tables.is_delta_table(spark, tables.events_path(cfg)):
        code = generate_demo_events.main([
            "--conf", args.conf, "--users", str(users), "--days", str(days),
            "--end-date", cfg.demo.end_date, "--seed", str(cfg.demo.seed),
            "--truth-days", "45" if args.ground_truth else "0",
        ])
        if code:
            return code
    else:
        log.info("demo events already at %s (use --fresh to regenerate)", tables.events_path(cfg))
    return run_job(cfg, [run_date], None, args.retrain)


if __name__ == "__main__":
    sys.exit(main())
