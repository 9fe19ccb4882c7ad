"""Benchmark: time and peak memory of generating demo events, alone and written to Delta.

    .venv/bin/python -m benchmarks.generate_events --users 145000 --days 120

Each measurement runs in its own process so its peak resident memory (getrusage ru_maxrss) is its own:
`generate` draws every day's Arrow batch and drops it; `write` streams the batches to a Delta table
(delta-rs, partitioned by event_date) in a temporary folder. 20k users x 120 days give about 1.4M
events, so 145k users give about 10M.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from segments_lib.intake import demo
from segments_lib.store import tables


def _measure(mode: str, users: int, days: int, seed: int) -> dict[str, float]:
    start, cpu_start = time.perf_counter(), time.process_time()
    rows = 0
    batches = demo.generate_event_batches(users=users, days=days, end_date=date(2026, 6, 1), seed=seed)
    if mode == "generate":
        for batch in batches:
            rows += batch.num_rows
    else:
        folder = Path(tempfile.mkdtemp(prefix="bench_events_"))
        try:
            def counted():
                nonlocal rows
                for batch in batches:
                    rows += batch.num_rows
                    yield batch

            tables.write_arrow_delta(counted(), folder / "events", demo.EVENTS_ARROW_SCHEMA, ["event_date"])
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return {
        "mode": mode, "events": rows, "seconds": round(time.perf_counter() - start, 1),
        "cpu_seconds": round(time.process_time() - cpu_start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=145_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--mode", choices=["generate", "write"], default=None, help="(internal) one measurement")
    args = parser.parse_args(argv)
    if args.mode:
        print(json.dumps(_measure(args.mode, args.users, args.days, args.seed)))
        return 0
    for mode in ("generate", "write"):
        out = subprocess.run([sys.executable, "-m", "benchmarks.generate_events", "--mode", mode,
                              "--users", str(args.users), "--days", str(args.days), "--seed", str(args.seed)],
                             capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
