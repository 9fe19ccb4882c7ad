"""Nightly cost against the length of the history: the same segment on the same last 120 days, with 120
and with 480 days of events before the night, measured side by side in one process.

    .venv/bin/python -m benchmarks.history                       # 8,000 users, 120 vs 480 days
    .venv/bin/python -m benchmarks.history --users 5000 --repeats 3

Both workspaces hold demo events ending 2026-06-01: the long one 480 days of them, the short one the
last 120 days of the very same rows. Each trains its model beforehand (the night of 05-31, `--retrain
always`; that night also imports the whole source into the validated table), then the scoring-only
night of 06-01 (`--retrain never`) runs `--repeats` times per workspace, alternating short and long so
that a change in the machine's load hits both. The segment is the demo's `likely_to_purchase` with
`feature_history: 90d`, so both nights read the same window (06-01 − 90d onwards): what the night costs
should not depend on the 360 days only the long workspace has. Writes under benchmarks/_work/history
(gitignored) and prints a Markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date, timedelta
from pathlib import Path

from pyspark.sql import functions as F

from segments_lib.config import AppConfig, load_config
from segments_lib.intake.demo import EVENTS_ARROW_SCHEMA, generate_event_batches
from segments_lib.job.runner import run_job
from segments_lib.progress import configure_logging
from segments_lib.store import tables, validated
from segments_lib.store.session import build_session

WORK = Path(__file__).resolve().parent / "_work" / "history"
END = date(2026, 6, 1)  # the measured night; the events end the day before
TRAIN_NIGHT = END - timedelta(days=1)
SEGMENT = """
segments:
  - name: likely_to_purchase
    kind: conversion
    target: {occurs: {events: [Purchase Completed], min_count: 1}}
    past_window: 28d
    prediction_window: 7d
    feature_history: 90d
    precision_level: medium
    duration_pairs:
      - {first: Add to Cart, then: Purchase Completed, within: 24h}
    eligible: {active_in: 28d}
    training: {snapshots: 4, stride: 7d, min_positives: 100, min_negatives: 100,
               gbt: {max_iter: 30, max_depth: 3}, search: []}
"""


def workspace_config(name: str, conf: str) -> AppConfig:
    root = WORK / name
    root.mkdir(parents=True, exist_ok=True)
    segments = root / "segments.yaml"
    segments.write_text(SEGMENT)
    return load_config(conf, overrides={"workspace": str(root / "ws"), "segments_file": str(segments),
                                        "mlflow": {"tracking_uri": f"sqlite:///{root / 'ws' / 'mlflow.db'}"}})


def prepare(spark, short: AppConfig, long: AppConfig, users: int, long_days: int, short_days: int) -> dict:
    """Write both sources (the short one is the long one's last days) and train both models once."""
    if not tables.is_delta_table(spark, tables.events_path(long)):
        tables.write_arrow_delta(generate_event_batches(users, long_days, END, seed=7), tables.events_path(long),
                                 EVENTS_ARROW_SCHEMA, partition_by=("event_date",))
    if not tables.is_delta_table(spark, tables.events_path(short)):
        cut = END - timedelta(days=short_days)
        (tables.read_delta(spark, tables.events_path(long)).where(F.col("event_date") >= F.lit(cut))
         .write.format("delta").mode("overwrite").partitionBy("event_date").save(str(tables.events_path(short))))
    sizes = {}
    for name, cfg in (("short", short), ("long", long)):
        source = tables.read_delta(spark, tables.events_path(cfg))
        row = source.agg(F.count(F.lit(1)).alias("n"), F.min("event_date").alias("lo"),
                         F.max("event_date").alias("hi")).first()
        started = time.perf_counter()
        if not validated.exists(spark, cfg):
            assert run_job(cfg, [TRAIN_NIGHT], None, "always") == 0, f"{name}: the training night failed"
        sizes[name] = (int(row["n"]), row["lo"], row["hi"], time.perf_counter() - started)
    return sizes


def scoring_night(spark, cfg: AppConfig) -> tuple[float, dict[str, float]]:
    started = time.perf_counter()
    code = run_job(cfg, [END], None, "never")
    seconds = time.perf_counter() - started
    assert code == 0, f"the scoring night of {cfg.workspace} exited {code}"
    runs = tables.read_output(spark, cfg, tables.SEGMENT_RUNS).where(f"run_date = DATE'{END}'").collect()
    (run,) = runs
    assert not run.retrained and run.status in ("ok", "precision_unreachable"), (run.status, run.reason)
    return seconds, dict(run.stage_seconds or {})


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=8_000)
    parser.add_argument("--short-days", type=int, default=120)
    parser.add_argument("--long-days", type=int, default=480)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--conf", default="local")
    args = parser.parse_args(argv)

    short = workspace_config(f"short_{args.users}_{args.short_days}", args.conf)
    long = workspace_config(f"long_{args.users}_{args.long_days}", args.conf)
    spark = build_session(short.spark)
    sizes = prepare(spark, short, long, args.users, args.long_days, args.short_days)

    times: dict[str, list[float]] = {"short": [], "long": []}
    stages: dict[str, dict[str, float]] = {}
    for _ in range(args.repeats):
        for name, cfg in (("short", short), ("long", long)):
            seconds, stage_seconds = scoring_night(spark, cfg)
            times[name].append(seconds)
            stages[name] = stage_seconds

    median = {name: statistics.median(values) for name, values in times.items()}
    best = {name: min(values) for name, values in times.items()}
    print(f"\n{args.users:,} users; scoring-only night {END} (`--retrain never`), {args.repeats} runs each, "
          "alternating\n")
    print("| history | source events | days | training night s (not compared) | scoring night s, each run "
          "| median s | best s |")
    print("|---|---:|---|---:|---|---:|---:|")
    for name, days in (("short", args.short_days), ("long", args.long_days)):
        n, lo, hi, train_s = sizes[name]
        runs = ", ".join(f"{t:.1f}" for t in times[name])
        print(f"| {days} days | {n:,} | {lo} .. {hi} | {train_s:.0f} | {runs} | {median[name]:.1f} "
              f"| {best[name]:.1f} |")
    print(f"\nratio long / short: medians {median['long'] / median['short']:.2f}, "
          f"best runs {best['long'] / best['short']:.2f}")
    for name in ("short", "long"):
        shares = ", ".join(f"{stage} {seconds:.1f}s" for stage, seconds in stages[name].items())
        print(f"stages of the last {name} night: {shares}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
