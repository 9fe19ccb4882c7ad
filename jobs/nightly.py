"""The nightly job: `python -m jobs.nightly` or `spark-submit jobs/nightly.py`, unchanged.

    python -m jobs.nightly --conf local --date 2026-06-01            # one night; features use events before D 00:00 UTC
    python -m jobs.nightly --conf local --from 2026-05-01 --to 2026-05-31   # a backfill, night by night
    python -m jobs.nightly --conf local --check                       # dry run: can each segment be built?

--conf and --segments-file take a path first (relative to the current directory); a bare --conf name is
./conf/<name>.yaml, else the shipped one.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

if __package__ in (None, ""):  # spark-submit runs this file as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.options import EXIT_FAILED, EXIT_INVALID, EXIT_OK, INVALID_MEANING, iso_date, job_parser
from segments_lib.config import ConfigError, load_config, segments_file_override
from segments_lib.job.results import RETRAIN_MODES
from segments_lib.job.runner import run_job
from segments_lib.progress import configure_logging
from segments_lib.store.session import EnvironmentProblem

log = logging.getLogger("jobs.nightly")


def parse_args(argv: list[str] | None, today: date | None = None) -> argparse.Namespace:
    """The arguments, checked; `today` (UTC) is the wall clock's date unless a test fixes it."""
    parser = job_parser(__doc__, "jobs.nightly", {
        EXIT_OK: "every segment ended ok, skipped or precision_unreachable",
        EXIT_FAILED: "at least one segment failed (the summary says which and why)",
        EXIT_INVALID: INVALID_MEANING,
    })
    parser.add_argument("--date", type=iso_date, default=None, help="run date D, YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--from", dest="date_from", metavar="DATE", type=iso_date, default=None,
                        help="first night of a backfill")
    parser.add_argument("--to", dest="date_to", metavar="DATE", type=iso_date, default=None,
                        help="last night of a backfill")
    parser.add_argument("--segments", default=None, help="comma-separated segment names (default: all)")
    parser.add_argument("--segments-file", default=None,
                        help="segment definitions (default: segments_file in config)")
    parser.add_argument("--retrain", choices=RETRAIN_MODES, default="auto",
                        help="auto: train when there is no champion, it is retrain_every old, or drift or "
                        "missed promises call for it; always; never: score with the champion (default: auto)")
    parser.add_argument("--check", action="store_true", help="dry run: report whether each segment can be built, "
                        "train nothing")
    args = parser.parse_args(argv)
    if (args.date_from is None) != (args.date_to is None):
        parser.error("--from and --to go together")
    if args.date_from is not None and args.date is not None:
        parser.error("use either --date or --from/--to")
    if args.date_from is not None and args.date_from > args.date_to:
        parser.error(f"--from {args.date_from} is after --to {args.date_to}")
    refusal = future_date_refusal(args, today or datetime.now(timezone.utc).date())
    if refusal is not None:
        parser.error(refusal)
    return args


def future_date_refusal(args: argparse.Namespace, today: date) -> str | None:
    """Why a run date after today (UTC) is refused, else None. Its night would score on a day whose
    events have not all happened (features use every event before D 00:00 UTC) and write membership
    that later nights cannot trust, so it stops here, before any session or table is touched."""
    latest = args.date_to if args.date_to is not None else args.date
    option = "--to" if args.date_to is not None else "--date"
    if latest is None or latest <= today:
        return None
    return (f"{option} {latest} is in the future: today is {today} (UTC), and a night can run only once its "
            "date has come; give a date up to today")


def run_dates(args: argparse.Namespace) -> list[date]:
    if args.date_from is not None:
        days = (args.date_to - args.date_from).days
        return [args.date_from + timedelta(days=i) for i in range(days + 1)]
    return [args.date or datetime.now(timezone.utc).date()]


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(argv)
    try:
        cfg = load_config(args.conf, overrides=segments_file_override(args.segments_file))
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_INVALID
    try:
        return run_job(cfg, run_dates(args), args.segments, args.retrain, check_only=args.check)
    except EnvironmentProblem as exc:  # no Java, Delta JARs that cannot be resolved: the job cannot start
        log.error("%s", exc)
        return EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
