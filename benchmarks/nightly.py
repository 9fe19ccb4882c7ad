"""Nightly job timing: one night with retraining, then the same night scoring only, and each stage's share.

    .venv/bin/python -m benchmarks.nightly --users 145000 --days 120      # ≈ 10M events
    .venv/bin/python -m benchmarks.nightly --users 20000                  # the demo size

Writes into benchmarks/_work/nightly_<users> (gitignored) and prints a Markdown table for RESULTS.md.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

from segments_lib.config import load_config
from segments_lib.job.runner import run_job
from segments_lib.progress import configure_logging
from segments_lib.store import tables

WORK = Path(__file__).resolve().parent / "_work"


def stage_shares(rows: list) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for row in rows:
        for stage, seconds in (row.stage_seconds or {}).items():
            totals[stage] += seconds
    grand = sum(totals.values()) or 1.0
    return {stage: seconds / grand for stage, seconds in sorted(totals.items(), key=lambda kv: -kv[1])}


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--conf", default="local")
    args = parser.parse_args(argv)

    from jobs import generate_demo_events
    from segments_lib.store.session import build_session

    workspace = WORK / f"nightly_{args.users}"
    cfg = load_config(args.conf, overrides={"workspace": str(workspace)})
    run_date = date.fromisoformat(cfg.demo.end_date)
    spark = build_session(cfg.spark)
    if not tables.is_delta_table(spark, tables.events_path(cfg)):
        overlay = workspace / "overlay.yaml"
        overlay.parent.mkdir(parents=True, exist_ok=True)
        overlay.write_text(f"workspace: {workspace}\n")
        generate_demo_events.main(["--conf", str(overlay), "--users", str(args.users), "--days", str(args.days),
                                   "--truth-days", "0"])
    events = tables.read_delta(spark, tables.events_path(cfg)).count()

    timings = {}
    for mode in ("always", "never"):
        start = time.perf_counter()
        code = run_job(cfg, [run_date], None, mode)
        timings[mode] = (time.perf_counter() - start, code)
        runs = tables.read_output(spark, cfg, tables.SEGMENT_RUNS).where(f"run_date = DATE'{run_date}'").collect()
        timings[f"{mode}_shares"] = stage_shares(runs)
        timings[f"{mode}_segments"] = {r.segment: (r.status, (r.stage_seconds or {}).get("train"),
                                                   r.total_seconds) for r in runs}

    print(f"\n{events:,} events, {args.users:,} users, run date {run_date}, 5 segments\n")
    print("| night | wall s | exit |\n|---|---:|---:|")
    print(f"| with retraining (`--retrain always`) | {timings['always'][0]:.0f} | {timings['always'][1]} |")
    print(f"| scoring only (`--retrain never`) | {timings['never'][0]:.0f} | {timings['never'][1]} |")
    print("\n| segment | status | train s (with retraining) | segment s (with retraining) | segment s (scoring only) |")
    print("|---|---|---:|---:|---:|")
    for name, (status, train, total) in sorted(timings["always_segments"].items()):
        scoring_only = timings["never_segments"].get(name, (None, None, None))[2]
        print(f"| {name} | {status} | {train or 0:.0f} | {total or 0:.0f} | {scoring_only or 0:.0f} |")
    for mode in ("always", "never"):
        shares = ", ".join(f"{stage} {share:.0%}" for stage, share in timings[f"{mode}_shares"].items())
        print(f"\nstage shares, --retrain {mode}: {shares}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
