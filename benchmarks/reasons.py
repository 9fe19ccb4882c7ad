"""Cost of the reasons per member (issue 21 item 5): the `reasons` stage against the whole night, per segment.

    PYSPARK_PYTHON=.venv/bin/python .venv/bin/python -m benchmarks.reasons     # the demo size: 6,000 users × 100 days
    PYSPARK_PYTHON=.venv/bin/python .venv/bin/python -m benchmarks.reasons --users 145000 --days 120  # ≈ 10M

One night with `--retrain auto` (trains on a fresh workspace), then the same night scoring only (`--retrain never`),
both on demo events in benchmarks/_work/reasons_<users> (gitignored). Prints a Markdown table for
RESULTS.md from `segment_runs.stage_seconds` and the members in `segment_membership`. PYSPARK_PYTHON: the
reasons run in Python workers (mapInPandas), which must be an interpreter with numpy, pandas and pyarrow.
"""

from __future__ import annotations

import argparse
import time
from datetime import date

from pyspark.sql import functions as F

from benchmarks.nightly import WORK
from segments_lib.config import load_config
from segments_lib.job.runner import run_job
from segments_lib.progress import configure_logging
from segments_lib.store import tables


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=6_000)
    parser.add_argument("--days", type=int, default=100)
    parser.add_argument("--conf", default="local")
    args = parser.parse_args(argv)

    from jobs import generate_demo_events
    from segments_lib.store.session import build_session

    workspace = WORK / f"reasons_{args.users}"
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

    nights = {}
    for mode in ("auto", "never"):
        start = time.perf_counter()
        code = run_job(cfg, [run_date], None, mode)
        wall = time.perf_counter() - start
        runs = tables.read_output(spark, cfg, tables.SEGMENT_RUNS).where(F.col("run_date") == F.lit(run_date))
        members = tables.read_output(spark, cfg, tables.SEGMENT_MEMBERSHIP).where(
            (F.col("run_date") == F.lit(run_date)) & F.col("is_member")).groupBy("segment").agg(
            F.count(F.lit(1)).alias("members"), F.count("reason_1").alias("explained"))
        counts = {r.segment: (r.members, r.explained) for r in members.collect()}
        nights[mode] = (wall, code, [(r.segment, r.status, (r.stage_seconds or {}).get("reasons", 0.0),
                                      (r.stage_seconds or {}).get("score", 0.0), r.total_seconds or 0.0,
                                      *counts.get(r.segment, (0, 0))) for r in runs.orderBy("segment").collect()])

    print(f"\n{events:,} events, {args.users:,} users, run date {run_date}\n")
    print("| night | segment | status | members | with reason_1 | reasons s | score s | segment s |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for mode, (wall, code, rows) in nights.items():
        label = f"`--retrain {mode}`"
        for segment, status, reasons, score, total, members, explained in rows:
            print(f"| {label} | {segment} | {status} | {members:,} | {explained:,} | {reasons:.1f} | {score:.1f} "
                  f"| {total:.1f} |")
        reasons_sum = sum(r[2] for r in rows)
        print(f"| {label} | **all** (wall {wall:.0f} s, exit {code}) | | {sum(r[5] for r in rows):,} "
              f"| {sum(r[6] for r in rows):,} | {reasons_sum:.1f} | {sum(r[3] for r in rows):.1f} "
              f"| {sum(r[4] for r in rows):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
