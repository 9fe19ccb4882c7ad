"""The nightly job: `python -m jobs.nightly` or `spark-submit jobs/nightly.py`, unchanged.

    --date YYYY-MM-DD          run date D (default: today, UTC); features use events before D 00:00 UTC
    --from/--to                a backfill: every night from..to, in order
    --segments a,b             a subset of conf/segments.yaml
    --conf local               a config overlay: a path, or a name (./conf/<name>.yaml, else the shipped one)
    --segments-file PATH       segment definitions (default: segments_file in config; relative to the current directory)
    --retrain auto|always|never
    --check                    dry run: report whether each segment can be built, train nothing

Exit code 0 when every segment ended ok / skipped / precision_unreachable, 1 when any failed,
2 when the job cannot start: bad arguments or config, or the environment (no Java, Delta JARs that
cannot be resolved), with a one-line reason naming the setting to fix.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

if __package__ in (None, ""):  # spark-submit runs this file as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segments_lib.config import ConfigError, load_config, segments_file_override
from segments_lib.job.results import RETRAIN_MODES
from segments_lib.job.runner import run_job
from segments_lib.progress import configure_logging
from segments_lib.store.session import EnvironmentProblem

log = logging.getLogger("jobs.nightly")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (use YYYY-MM-DD)") from exc


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="jobs.nightly", description=__doc__.split("\n\n")[0])
    parser.add_argument("--date", type=_date, default=None, help="run date (default: today, UTC)")
    parser.add_argument("--from", dest="date_from", type=_date, default=None, help="first night of a backfill")
    parser.add_argument("--to", dest="date_to", type=_date, default=None, help="last night of a backfill")
    parser.add_argument("--segments", default=None, help="comma-separated segment names (default: all)")
    parser.add_argument("--conf", default=None, help="config overlay: a path, or a name in conf/ (local, cluster)")
    parser.add_argument("--segments-file", default=None,
                        help="segment definitions (default: segments_file in config)")
    parser.add_argument("--retrain", choices=RETRAIN_MODES, default="auto")
    parser.add_argument("--check", action="store_true", help="dry run: can each segment be built?")
    args = parser.parse_args(argv)
    if (args.date_from is None) != (args.date_to is None):
        parser.error("--from and --to go together")
    if args.date_from is not None and args.date is not None:
        parser.error("use either --date or --from/--to")
    if args.date_from is not None and args.date_from > args.date_to:
        parser.error(f"--from {args.date_from} is after --to {args.date_to}")
    return args


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
        return 2
    try:
        return run_job(cfg, run_dates(args), args.segments, args.retrain, check_only=args.check)
    except EnvironmentProblem as exc:  # no Java, Delta JARs that cannot be resolved: the job cannot start
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
