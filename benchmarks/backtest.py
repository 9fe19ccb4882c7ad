"""Promise-ledger backfill: score 30 nights of demo data, then check every closed night against its promise.

    .venv/bin/python benchmarks/backtest.py --users 3000 --nights 30 --workspace /tmp/bench_backtest

1. Demo events (`segments_lib.intake.demo`, users × days ending at demo.end_date) are written once to the
   workspace's events table with delta-rs.
2. The nightly segment code (`runner.run_night`, retrain auto: weekly retraining, champion/challenger)
   scores every run date S some evaluated night needs: S = D − ceil(horizon) for the last `--nights`
   nights D ending at demo.end_date. Each segment scores only its own S dates, in date order.
3. The ledger of each evaluated night is `monitoring.night_ledger` (labels for exactly the scored users of
   S, one aggregation), promises from the `thresholds.json` of the MLflow run that scored S. Rows are
   written to `segment_backtest` (replacing each (segment, scored_date) slice) and summarised with
   `monitoring.promise_kept_share`: per segment and level, the share of judged nights on which realized
   precision ≥ the promised lower bound (target ≥ 90 %).

`--ledger-only` skips steps 1–2 and recomputes the ledger from an existing workspace (e.g. after an
interrupted backfill: every night that was scored is evaluated).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segments_lib.config import AppConfig, load_config
from segments_lib.language.definitions import SegmentDefinition
from segments_lib.progress import configure_logging
from segments_lib.store import tables

log = logging.getLogger("benchmarks.backtest")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", default="/tmp/bench_backtest")
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--nights", type=int, default=30, help="evaluated nights, ending at demo.end_date")
    parser.add_argument("--segments", default=None, help="comma-separated subset (default: all demo segments)")
    parser.add_argument("--ledger-only", action="store_true", help="skip events and scoring; evaluate what exists")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="start no new scored night after this long; then evaluate what was scored")
    return parser.parse_args(argv)


def evaluated_nights(end: date, nights: int) -> list[date]:
    return [end - timedelta(days=k) for k in range(nights - 1, -1, -1)]


def scored_dates(segment: SegmentDefinition, nights: list[date]) -> list[date]:
    from segments_lib.promise.ledger import backtest_scored_date

    return [backtest_scored_date(d, segment.horizon) for d in nights]


def write_demo_events(cfg: AppConfig, users: int, days: int) -> None:
    from deltalake import write_deltalake

    from segments_lib.intake import demo

    if (cfg.events.path.path / "_delta_log").exists():
        log.info("demo events already at %s", cfg.events.path)
        return
    start = time.perf_counter()
    events = demo.generate_events(users=users, days=days, end_date=date.fromisoformat(cfg.demo.end_date),
                                  seed=cfg.demo.seed)
    write_deltalake(str(cfg.events.path), events, partition_by=["event_date"])
    log.info("wrote %d demo events (%d users x %d days) in %.0fs", events.num_rows, users, days,
             time.perf_counter() - start)


def backfill(spark, cfg: AppConfig, segments: list[SegmentDefinition], nights: list[date],
             max_minutes: float | None = None) -> float:
    """Score each segment's needed run dates in date order; returns the seconds spent."""
    from segments_lib.job.results import summary_table, write_runs
    from segments_lib.job.runner import prepare_events, run_night

    start = time.perf_counter()
    prepared = prepare_events(spark, cfg, nights[-1])
    needed = {s.name: set(scored_dates(s, nights)) for s in segments}
    for run_date in sorted(set().union(*needed.values())):
        if max_minutes is not None and time.perf_counter() - start > 60 * max_minutes:
            log.warning("time budget of %.0f min spent: stopping before %s", max_minutes, run_date)
            break
        night_start = time.perf_counter()
        due = [s for s in segments if run_date in needed[s.name]]
        results = run_night(spark, cfg, due, prepared, run_date, "auto")
        write_runs(spark, cfg, results)
        print(f"\nNight {run_date} ({time.perf_counter() - night_start:.0f}s)\n"
              + summary_table(results, cfg.mlflow.tracking_uri), flush=True)
    prepared.release()
    return time.perf_counter() - start


def build_ledger(spark, cfg: AppConfig, segments: list[SegmentDefinition], nights: list[date]) -> pd.DataFrame:
    """Evaluate every night whose scored date has a membership; write and return the ledger rows."""
    from pyspark.sql import functions as F

    from segments_lib.promise.ledger import night_ledger, promises_from_choices
    from segments_lib.store.tracking import run_artifact_json

    membership = tables.read_output(spark, cfg, tables.SEGMENT_MEMBERSHIP)
    if membership is None:
        raise SystemExit(f"no segment_membership table under {cfg.output.root}: run the backfill first")
    events = tables.read_delta(spark, cfg.events.path)
    # One small collect: which (segment, run date) slices exist and which MLflow run scored them.
    scored = {
        (r["segment"], r["run_date"]): r["mlflow_run_id"]
        for r in membership.select("segment", "run_date", "mlflow_run_id").distinct().collect()
    }
    frames = []
    for segment in segments:
        for night, scored_date in zip(nights, scored_dates(segment, nights), strict=True):
            run_id = scored.get((segment.name, scored_date))
            if run_id is None:
                continue
            promises = promises_from_choices(run_artifact_json(run_id, "thresholds.json"), cfg.nightly.confidence)
            rows = night_ledger(events, membership.where(F.col("segment") == segment.name), segment, promises, night)
            tables.write_output(rows, cfg, tables.SEGMENT_BACKTEST,
                                {"segment": segment.name, "scored_date": scored_date}, partition_by=("scored_date",),
                                description="Realized versus promised precision per segment, scored date and level.")
            frames.append(rows.toPandas())
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def markdown(summary: pd.DataFrame) -> str:
    lines = ["| segment | level | nights judged | kept (≥ lower bound) | share kept | nights without verdict |",
             "|---|---|---:|---:|---:|---:|"]
    for r in summary.itertuples(index=False):
        share = "–" if r.share_kept is None or math.isnan(r.share_kept) else f"{r.share_kept:.0%}"
        lines.append(f"| {r.segment} | {r.level} | {r.nights_judged} | {r.nights_kept} | {share} | "
                     f"{r.nights_without_verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(argv)
    cfg = load_config("local", overrides={"workspace": str(Path(args.workspace).resolve())})
    from segments_lib.job.runner import select_segments
    from segments_lib.language.segment_config import load_segments
    from segments_lib.promise.ledger import promise_kept_share
    from segments_lib.store.session import build_session
    from segments_lib.store.tracking import configure_mlflow

    segments = select_segments(load_segments(cfg.segments_file, cfg.precision_levels), args.segments)
    nights = evaluated_nights(date.fromisoformat(cfg.demo.end_date), args.nights)
    spark = build_session(cfg.spark, app_name="benchmark-backtest")
    configure_mlflow(cfg.mlflow)
    backfill_seconds = None
    if not args.ledger_only:
        write_demo_events(cfg, args.users, args.days)
        backfill_seconds = backfill(spark, cfg, segments, nights, args.max_minutes)
    start = time.perf_counter()
    ledger = build_ledger(spark, cfg, segments, nights)
    ledger_seconds = time.perf_counter() - start
    ledger.to_csv(cfg.workspace.path / "segment_backtest.csv", index=False)
    print(f"\nnights evaluated {nights[0]} .. {nights[-1]}; ledger rows {len(ledger)}; "
          f"backfill {backfill_seconds and round(backfill_seconds)}s, ledger {ledger_seconds:.0f}s")
    if not ledger.empty:
        print(markdown(promise_kept_share(ledger)))
        means = ledger.groupby(["segment", "level"])[["promised_lower_bound", "realized_precision", "members"]].mean()
        print("\nmean per segment and level over judged nights:\n" + means.round(3).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
