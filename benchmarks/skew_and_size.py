"""Skew and size (issue 23, item 4): one user with very many events, and many segments in one night.

    .venv/bin/python -m benchmarks.skew_and_size whale --events 200000,1000000
    .venv/bin/python -m benchmarks.skew_and_size segments --counts 10,50
    .venv/bin/python -m benchmarks.skew_and_size segments --counts 50 --nights score   # reuse the champions
    .venv/bin/python -m benchmarks.skew_and_size report                             # the table of all runs

Both scenarios run real nights (`segments_lib.job.runner.run_job`, the code behind `jobs.nightly`) on a
small demo population: by default the test suite's 1,500 users × 70 days (seed 11) ending 2026-06-01.

* `whale`: the population plus one user, `whale`, with `--events` events spread evenly over the whole
  history (one every ~6 s for 1M in 70 days), drawn from the demo's event names in about the demo's
  proportions, purchases and transactions valued. The segment is the demo's `likely_to_purchase`
  (P1 28d, P3 7d, the Add to Cart → Purchase Completed duration pair, whose window spans all of a
  user's events of a snapshot) with the test suite's small training (2 snapshots, 8 trees of depth 3).
* `segments`: the population alone and the first `--counts` of up to 60 generated definitions that vary
  the target (occurs / min_count / value filter / absent / sequence / value_sum / all_of / any_of over
  the demo's event names), P1 / P3 and the precision level. Training is the cheapest the segment YAML
  allows (`--training cheapest`: 1 snapshot, a single tree of depth 1, no search; at least 20
  positives and 20 negatives), so that what is measured is the night's machinery per segment.

Each point is one night in its own process (its own JVM: a JVM's resident memory never shrinks, so a
second night in the same process would inherit the first one's peak). The training night
(2026-05-31, `--retrain always`) starts from an empty workspace, so it also imports and validates the
whole source; the scoring night (2026-06-01, `--retrain never`) reuses the champions the training
night registered and refreshes only the newest days. While the night runs, background threads sample
this Python driver's RSS and its java child's RSS every 0.2 s (psutil, `benchmarks.features.PeakRss`),
and every 0.5 s over JMX (py4j) the JVM's heap in use and the heap left after the latest collection
(what the night retains). After the night the Spark REST API's `peakMemoryMetrics` of the driver are
read as a cross-check (absent when no executor heartbeat reported them). Every point is appended to
benchmarks/_work/skew_and_size/results.jsonl (gitignored); each point's log is next to it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from benchmarks.features import BackgroundSampler, PeakRss
from segments_lib.intake import demo

WORK = Path(__file__).resolve().parent / "_work" / "skew_and_size"
RESULTS = WORK / "results.jsonl"
SCORE_NIGHT = date(2026, 6, 1)  # the demo's run date; the events end the day before
TRAIN_NIGHT = SCORE_NIGHT - timedelta(days=1)
WHALE = "whale"
_US_DAY = 86_400_000_000
MB = 2**20

# Training blocks of the segment YAML. `cheapest`: the smallest values the parser accepts for the
# costly knobs (snapshots ≥ 1, max_iter ≥ 1, max_depth ≥ 1, search off). `small`: the test suite's
# job-level training (tests/support/segments.py), a model that actually ranks.
TRAINING = {
    "cheapest": "{snapshots: 1, stride: 7d, min_positives: 20, min_negatives: 20, "
                "gbt: {max_iter: 1, max_depth: 1}, search: []}",
    "small": "{snapshots: 2, stride: 7d, min_positives: 20, min_negatives: 20, "
             "gbt: {max_iter: 8, max_depth: 3}, search: []}",
}

# The whale's event mix: the demo's per-session means, plus notifications, carts and purchases.
WHALE_MIX: dict[str, float] = {demo.OPEN_APP: 1.0, **demo.SESSION_EVENT_MEANS, demo.CLICK: 0.3,
                               demo.ADD_TO_CART: 0.3, demo.PURCHASE: 0.08}
VALUED = (demo.PURCHASE, demo.TRANSACTION)


# --- the data ------------------------------------------------------------------------------------


def whale_batches(events: int, days: int, end: date, seed: int, chunk: int = 250_000) -> Iterator[pa.RecordBatch]:
    """`events` rows of one user, evenly spaced over [end − days, end): every time distinct (no exact
    duplicate for validation to drop), every one before the run date's midnight."""
    rng = np.random.default_rng([seed, 23])
    names = list(WHALE_MIX)
    weights = np.array([WHALE_MIX[n] for n in names]) / sum(WHALE_MIX.values())
    valued = np.isin(np.arange(len(names)), [names.index(n) for n in VALUED])
    start_us = int(datetime(end.year, end.month, end.day, tzinfo=timezone.utc).timestamp()) * 1_000_000
    start_us -= days * _US_DAY
    span_us = days * _US_DAY
    name_array = pa.array(names, pa.string())
    for lo in range(0, events, chunk):
        index = np.arange(lo, min(events, lo + chunk), dtype=np.int64)
        ts = start_us + index * span_us // events
        code = rng.choice(len(names), size=index.size, p=weights)
        value = np.where(valued[code], rng.lognormal(np.log(40.0), 0.5, index.size), np.nan)
        yield pa.RecordBatch.from_arrays([
            pa.array(np.full(index.size, WHALE, dtype=object), pa.string()),
            name_array.take(pa.array(code)),
            pa.array(ts, pa.timestamp("us", tz="UTC")),
            pa.array(value, pa.float64(), mask=np.isnan(value)),
            pa.array((ts // _US_DAY).astype(np.int32), pa.date32()),
        ], schema=demo.EVENTS_ARROW_SCHEMA)


def ensure_source(users: int, days: int, seed: int, whale_events: int) -> tuple[Path, int]:
    """The source events table (Delta, written with delta-rs, no JVM) and its row count; kept between runs."""
    from segments_lib.store import tables

    name = f"demo_{users}u_{days}d_s{seed}" + (f"_whale_{whale_events}" if whale_events else "")
    path = WORK / "sources" / name
    rows_file = path.with_suffix(".rows")
    if (path / "_delta_log").is_dir() and rows_file.exists():
        return path, int(rows_file.read_text())
    rows = 0

    def counted() -> Iterator[pa.RecordBatch]:
        nonlocal rows
        batches = demo.generate_event_batches(users=users, days=days, end_date=SCORE_NIGHT, seed=seed)
        if whale_events:
            batches = itertools.chain(batches, whale_batches(whale_events, days, SCORE_NIGHT, seed))
        for batch in batches:
            rows += batch.num_rows
            yield batch

    path.parent.mkdir(parents=True, exist_ok=True)
    tables.write_arrow_delta(counted(), path, demo.EVENTS_ARROW_SCHEMA, partition_by=("event_date",))
    rows_file.write_text(str(rows))
    return path, rows


# --- the segment definitions ----------------------------------------------------------------------


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower())


def target_variants() -> list[tuple[str, str, str]]:
    """(name part, kind, target as YAML flow) over the demo's event names; `occurs` targets interleaved
    with the other term types, so that any prefix of the list mixes them."""
    occurs = [(f"occurs_{_slug(e)}", "engagement" if e == demo.CLICK else "custom", f"{{occurs: {{events: [{e}]}}}}")
              for e in (demo.OPEN_APP, "Screen Viewed", "Content Viewed", "Browse Content", "Feature Used",
                        "Message Read", demo.CLICK, demo.ADD_TO_CART, demo.PURCHASE, demo.TRANSACTION)]
    activity = ", ".join(sorted(demo.ACTIVITY_EVENTS))
    others = [
        ("churn", "churn", f"{{absent: {{events: [{activity}]}}}}"),
        ("abandon_24h", "abandonment",
         f"{{sequence: {{first: {demo.ADD_TO_CART}, then: {demo.PURCHASE}, within: 24h}}}}"),
        ("value_100", "high_value", f"{{value_sum: {{events: [{demo.PURCHASE}], at_least: 100}}}}"),
        ("open_3x", "custom", f"{{occurs: {{events: [{demo.OPEN_APP}], min_count: 3}}}}"),
        ("big_purchase", "conversion", f"{{occurs: {{events: [{demo.PURCHASE}], value_at_least: 60}}}}"),
        ("value_top10", "high_value",
         f"{{value_sum: {{events: [{demo.PURCHASE}, {demo.TRANSACTION}], top_fraction: 0.1}}}}"),
        ("cart_and_buy", "conversion", f"{{all_of: [{{occurs: {{events: [{demo.ADD_TO_CART}]}}}}, "
                                       f"{{occurs: {{events: [{demo.PURCHASE}]}}}}]}}"),
        ("read_or_click", "engagement", f"{{any_of: [{{occurs: {{events: [Message Read]}}}}, "
                                        f"{{occurs: {{events: [{demo.CLICK}]}}}}]}}"),
        ("abandon_6h", "abandonment",
         f"{{sequence: {{first: {demo.ADD_TO_CART}, then: {demo.PURCHASE}, within: 6h}}}}"),
        ("form_submitted", "custom", "{occurs: {events: [Form Submission]}}"),
    ]
    return [v for pair in zip(occurs, others, strict=True) for v in pair]


WINDOWS = (("28d", "7d"), ("14d", "14d"), ("28d", "3d"))  # (P1, P3)
LEVELS = ("medium", "low", "high", "0.3")


def many_segments_yaml(count: int, training: str) -> str:
    """The first `count` of up to 60 distinct definitions: target i mod 20, windows i mod 3, level i mod 4
    (20 and 3 are coprime, so the first 60 never repeat a (target, windows) pair)."""
    targets = target_variants()
    if count > len(targets) * len(WINDOWS):
        raise ValueError(f"at most {len(targets) * len(WINDOWS)} distinct segments, asked for {count}")
    out = ["segments:"]
    for i in range(count):
        part, kind, target = targets[i % len(targets)]
        p1, p3 = WINDOWS[i % len(WINDOWS)]
        pairs = (f"\n    duration_pairs: [{{first: {demo.ADD_TO_CART}, then: {demo.PURCHASE}, within: 24h}}]"
                 if i % 2 == 0 else "")
        out.append(f"""  - name: s{i:02d}_{part}_{p3}
    kind: {kind}
    target: {target}
    past_window: {p1}
    prediction_window: {p3}
    precision_level: {LEVELS[i % len(LEVELS)]}{pairs}
    eligible: {{active_in: {p1}}}
    training: {TRAINING[training]}""")
    return "\n".join(out) + "\n"


def whale_segment_yaml(training: str) -> str:
    """The demo's `likely_to_purchase` (conf/segments.yaml) with another training block."""
    return f"""segments:
  - name: likely_to_purchase
    kind: conversion
    target: {{occurs: {{events: [{demo.PURCHASE}], min_count: 1}}}}
    past_window: 28d
    prediction_window: 7d
    precision_level: medium
    duration_pairs: [{{first: {demo.ADD_TO_CART}, then: {demo.PURCHASE}, within: 24h}}]
    eligible: {{active_in: 28d}}
    training: {TRAINING[training]}
"""


# --- one point: one night in this process ----------------------------------------------------------


class JvmHeap(BackgroundSampler):
    """Samples the driver JVM's heap over JMX (py4j) every `interval` s while in the `with` block.

    `used`: heap in use (live data plus garbage not yet collected: it climbs towards the heap's soft
    limit and falls at each GC, so its peak says more about the GC's sizing than about the night).
    `after_gc`: the heap right after the latest collection (`getLastGcInfo`, every heap pool summed):
    what a collection could not free, i.e. the live data plus old-generation garbage awaiting a mixed
    collection — the measure of what the night retains. `gc_seconds`: collection time in the block.
    """

    def __init__(self, spark: Any, interval: float = 0.5) -> None:
        management = spark.sparkContext._jvm.java.lang.management.ManagementFactory
        self._memory = management.getMemoryMXBean()
        self._heap_pools = {p.getName() for p in management.getMemoryPoolMXBeans() if p.getType().name() == "HEAP"}
        self._gcs = list(management.getGarbageCollectorMXBeans())
        self.max = self._memory.getHeapMemoryUsage().getMax()
        self.used = self.after_gc = 0
        self.gc_seconds = 0.0
        self.gc_count = 0
        self.errors = 0
        self.interval = interval
        self._seen: dict[str, int] = {}  # collector → id of the last collection already read

    def _gc_totals(self) -> tuple[int, int]:
        return (sum(max(0, gc.getCollectionTime()) for gc in self._gcs),
                sum(max(0, gc.getCollectionCount()) for gc in self._gcs))

    def _read_last_gcs(self) -> None:
        for gc in self._gcs:
            info = gc.getLastGcInfo()
            if info is None or self._seen.get(gc.getName()) == info.getId():
                continue
            self._seen[gc.getName()] = info.getId()
            after = sum(u.getUsed() for name, u in info.getMemoryUsageAfterGc().items() if name in self._heap_pools)
            self.after_gc = max(self.after_gc, after)

    def sample(self) -> None:
        try:
            self.used = max(self.used, self._memory.getHeapMemoryUsage().getUsed())
            self._read_last_gcs()
        except Exception:  # a py4j hiccup under load loses a sample, not the measurement
            self.errors += 1

    def started(self) -> None:
        self._gc_start = self._gc_totals()

    def stopped(self) -> None:
        ms, count = self._gc_totals()
        self.gc_seconds, self.gc_count = (ms - self._gc_start[0]) / 1000, count - self._gc_start[1]


def rest_peaks(spark: Any) -> dict[str, float]:
    """The driver's `peakMemoryMetrics` from the Spark REST API, in MB ({} without a UI or metrics)."""
    sc = spark.sparkContext
    if not sc.uiWebUrl:
        return {}
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/executors"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            executors = json.load(response)
    except OSError:
        return {}
    driver = next((e for e in executors if e.get("id") == "driver"), {})
    peaks = driver.get("peakMemoryMetrics") or {}
    return {k: round(v / MB) for k, v in peaks.items() if k in ("JVMHeapMemory", "JVMOffHeapMemory")}


class JobStages(logging.Handler):
    """Catches the job timer's `✔ events (12.3s)` and `✔ night 2026-06-01 (45.6s)` lines, so that a
    training night's import of the whole source is reported apart from the night itself."""

    PATTERN = re.compile(r"^✔ (events|night) ?\S* \(([\d.]+)s\)$")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seconds: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        match = self.PATTERN.match(record.getMessage())
        if match:
            self.seconds[match.group(1)] = round(float(match.group(2)), 1)


def point_config(point: dict[str, Any], source: Path) -> Any:
    from segments_lib.config import load_config

    root = Path(point["workspace"])
    segments_file = root / "segments.yaml"
    return load_config(point["conf"], overrides={
        "workspace": str(root / "ws"), "segments_file": str(segments_file),
        "events": {"path": str(source)},
        "mlflow": {"tracking_uri": f"sqlite:///{root / 'ws' / 'mlflow.db'}"},
    })


def night_outcome(spark: Any, cfg: Any, run_date: date, whale: bool) -> dict[str, Any]:
    """Statuses, stage seconds and failures from `segment_runs`; for the whale, whether all its rows were
    validated and whether it has a membership row (was scored) that night."""
    from pyspark.sql import functions as F

    from segments_lib.store import tables, validated

    record: dict[str, Any] = {}
    runs = tables.read_output(spark, cfg, tables.SEGMENT_RUNS)
    rows = runs.where(F.col("run_date") == F.lit(run_date)).collect() if runs is not None else []
    record["statuses"] = dict(Counter(r.status for r in rows))
    record["retrained"] = sum(bool(r.retrained) for r in rows)
    record["failures"] = [f"{r.segment}: {r.reason}"[:300] for r in rows if r.status == "failed"]
    seconds = [r.total_seconds for r in rows if r.total_seconds is not None]
    record["segment_s_median"] = round(statistics.median(seconds), 1) if seconds else None
    record["segment_s_max"] = round(max(seconds), 1) if seconds else None
    stages: Counter[str] = Counter()
    for r in rows:
        stages.update(r.stage_seconds or {})
    record["stage_s"] = {k: round(v, 1) for k, v in stages.most_common(6)}
    if whale:  # the whale went through: validated whole, and scored that night
        record["whale_validated"] = validated.read_events(spark, cfg).where(F.col("user_id") == WHALE).count()
        members = tables.read_output(spark, cfg, tables.SEGMENT_MEMBERSHIP)
        record["whale_scored"] = (members is not None and members.where(
            (F.col("run_date") == F.lit(run_date)) & (F.col("user_id") == WHALE)).count() > 0)
    return record


def run_point(point: dict[str, Any]) -> dict[str, Any]:
    """One night of one workspace, measured; returns the result record."""
    from segments_lib.job.runner import run_job
    from segments_lib.progress import configure_logging
    from segments_lib.store.session import build_session

    configure_logging()
    root = Path(point["workspace"])
    training_night = point["night"] == "train"
    if training_night and root.exists():
        shutil.rmtree(root)  # a training night starts from nothing: no validated events, no champions
    root.mkdir(parents=True, exist_ok=True)
    yaml = (whale_segment_yaml(point["training"]) if point["scenario"] == "whale"
            else many_segments_yaml(point["size"], point["training"]))
    (root / "segments.yaml").write_text(yaml)
    cfg = point_config(point, Path(point["source"]))
    run_date, retrain = (TRAIN_NIGHT, "always") if training_night else (SCORE_NIGHT, "never")

    spark = build_session(cfg.spark)  # run_job's own build_session gets this session back
    job_stages = JobStages()
    logging.getLogger("segments_lib.job.runner").addHandler(job_stages)
    load_before = os.getloadavg()
    with PeakRss() as rss, JvmHeap(spark) as heap:
        started = time.perf_counter()
        code = run_job(cfg, [run_date], None, retrain)
        wall = time.perf_counter() - started
    load_after = os.getloadavg()
    record: dict[str, Any] = {
        **{k: point[k] for k in ("scenario", "size", "night", "training", "users", "days", "source_rows", "code")},
        "run_date": str(run_date), "retrain": retrain, "exit": code, "wall_s": round(wall, 1),
        "events_s": job_stages.seconds.get("events"), "night_s": job_stages.seconds.get("night"),
        "python_rss_peak_mb": round(rss.python / MB), "jvm_rss_peak_mb": round(rss.jvm / MB),
        "jvm_cpu_s": round(rss.jvm_cpu), "python_cpu_s": round(rss.python_cpu),
        "heap_used_peak_mb": round(heap.used / MB), "heap_after_gc_peak_mb": round(heap.after_gc / MB),
        "heap_max_mb": round(heap.max / MB), "gc_s": round(heap.gc_seconds, 1), "gc_count": heap.gc_count,
        "jmx_errors": heap.errors,
        "rest_peaks_mb": rest_peaks(spark),
        "load_before": [round(x, 1) for x in load_before], "load_after": [round(x, 1) for x in load_after],
        "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
    }
    try:  # what the night wrote; a failure here must not lose the measurement above
        record.update(night_outcome(spark, cfg, run_date, point["scenario"] == "whale"))
    except Exception as exc:
        record["outcome_error"] = repr(exc)[:500]
    return record


# --- the driver: one subprocess per point, then the table ------------------------------------------


def spawn(point: dict[str, Any]) -> dict[str, Any] | None:
    log = WORK / f"{Path(point['workspace']).name}_{point['night']}.log"
    print(f"▶ {point['scenario']} {point['size']:,} {point['night']} night (log: {log})", flush=True)
    point = {**point, "work": str(WORK)}
    with log.open("w") as out:
        code = subprocess.run([sys.executable, "-m", "benchmarks.skew_and_size", "--point", json.dumps(point)],
                              stdout=out, stderr=subprocess.STDOUT).returncode
    lines = [line for line in log.read_text().splitlines() if line.startswith("RESULT ")]
    if not lines:
        print(f"✘ the point's process exited {code} without a result; see {log}", flush=True)
        return None
    record = json.loads(lines[-1][len("RESULT "):])
    with RESULTS.open("a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"✔ exit {record['exit']}, {record['wall_s']:.0f} s, statuses {record.get('statuses')}", flush=True)
    return record


def _mb(value: float | None) -> str:
    return f"{value:,.0f}" if value else "–"


def print_table(records: list[dict[str, Any]]) -> None:
    """The Markdown table of RESULTS.md, one row per night, then each night's heaviest stages."""
    print("\n| scenario | size | night | exit | statuses | trained | wall s (events + night) "
          "| per segment s (median / max) "
          "| Python RSS peak MB | JVM RSS peak MB | JVM heap used peak MB | JVM heap after GC peak MB | GC s "
          "| load 1 min before → after |")
    print("|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in records:
        size = f"{r['size']:,} {'events' if r['scenario'] == 'whale' else 'segments'}"
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(r.get("statuses", {}).items())) or "?"
        night = f"{r['night']} {r['run_date']}"
        per_segment = f"{r['segment_s_median']} / {r['segment_s_max']}" if r.get("segment_s_median") else "–"
        print(f"| {r['scenario']} | {size} | {night} | {r['exit']} | {statuses} | {r.get('retrained', '?')} "
              f"| {r['wall_s']:.0f} ({r.get('events_s')} + {r.get('night_s')}) | {per_segment} "
              f"| {_mb(r['python_rss_peak_mb'])} | {_mb(r['jvm_rss_peak_mb'])} "
              f"| {_mb(r['heap_used_peak_mb'])} | {_mb(r['heap_after_gc_peak_mb'])} | {r['gc_s']} "
              f"| {r['load_before'][0]} → {r['load_after'][0]} |")
    print()
    for r in records:
        extra = ""
        if r["scenario"] == "whale":
            extra = f"; whale rows validated {r.get('whale_validated'):,}, scored: {r.get('whale_scored')}"
        stages = ", ".join(f"{k} {v}s" for k, v in r.get("stage_s", {}).items())
        print(f"- {r['scenario']} {r['size']:,} {r['night']} (finished {r['finished_utc']} UTC, source "
              f"{r['source_rows']:,} events, heap max {r['heap_max_mb']:,} MB, REST peaks {r['rest_peaks_mb']}, "
              f"JVM CPU {r['jvm_cpu_s']} s, code {r.get('code')}){extra}; stage seconds summed over segments: {stages}")
        if r.get("outcome_error"):
            print(f"  - reading what the night wrote failed: {r['outcome_error']}")
        for failure in r.get("failures", []):
            print(f"  - failed: {failure}")


def report() -> int:
    if not RESULTS.exists():
        print(f"no results recorded yet in {RESULTS}")
        return 1
    latest: dict[tuple, dict[str, Any]] = {}
    for line in RESULTS.read_text().splitlines():
        r = json.loads(line)
        latest[(r["scenario"], r["training"], r["users"], r["days"], r["size"], r["night"])] = r
    print_table(sorted(latest.values(), key=lambda r: (r["scenario"], r["size"], r["night"] != "train")))
    return 0


def _ints(text: str) -> list[int]:
    return [int(float(x.replace("_", ""))) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    global WORK, RESULTS  # --work (or the point's folder) moves the sources, workspaces and results
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", nargs="?", choices=["whale", "segments", "report"])
    parser.add_argument("--events", default="200000,1000000", help="whale: the whale's event counts, one point each")
    parser.add_argument("--counts", default="10,50", help="segments: segment counts, one point each")
    parser.add_argument("--nights", default="train,score", help="train (05-31, --retrain always, fresh workspace), "
                        "score (06-01, --retrain never, after a train night), or both")
    parser.add_argument("--users", type=int, default=1_500, help="the demo population (default: the tests')")
    parser.add_argument("--days", type=int, default=70)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--training", choices=sorted(TRAINING), default=None,
                        help="training block: default small for whale, cheapest for segments")
    parser.add_argument("--conf", default="local", help="config overlay (default: local, i.e. local[2], 4g driver)")
    parser.add_argument("--work", default=str(WORK), help="sources, workspaces, logs and results.jsonl (default: "
                        "%(default)s)")
    parser.add_argument("--code", help="label of the code measured, recorded with each point (default: the "
                        "checkout's git commit; give it when running from an exported copy)")
    parser.add_argument("--point", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.point:
        point = json.loads(args.point)
        WORK, RESULTS = Path(point["work"]), Path(point["work"]) / "results.jsonl"
        print("RESULT " + json.dumps(run_point(point)), flush=True)
        return 0
    WORK = Path(args.work).resolve()
    RESULTS = WORK / "results.jsonl"
    if args.scenario in (None, "report"):
        return report()

    WORK.mkdir(parents=True, exist_ok=True)
    training = args.training or ("small" if args.scenario == "whale" else "cheapest")
    nights = [n for n in ("train", "score") if n in args.nights.split(",")]
    sizes = _ints(args.events if args.scenario == "whale" else args.counts)
    commit = args.code or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                         cwd=Path(__file__).resolve().parent).stdout.strip() or "unknown"
    records = []
    for size in sizes:
        whale = size if args.scenario == "whale" else 0
        started = time.perf_counter()
        source, rows = ensure_source(args.users, args.days, args.seed, whale)
        print(f"source {source.name}: {rows:,} events ({time.perf_counter() - started:.0f} s)", flush=True)
        name = f"{args.scenario}_{size}_{args.users}u{args.days}d_{training}"
        for night in nights:
            point = {"scenario": args.scenario, "size": size, "night": night, "training": training,
                     "users": args.users, "days": args.days, "source": str(source), "source_rows": rows,
                     "workspace": str(WORK / name), "conf": args.conf, "code": commit}
            record = spawn(point)
            if record is None:
                break  # a scoring night without its training night measures nothing
            records.append(record)
    print_table(records)
    return 0 if records and all(r["exit"] == 0 for r in records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
