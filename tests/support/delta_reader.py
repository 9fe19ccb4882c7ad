"""A BI reader outside Spark: delta-rs opens the newest version of a Delta table, DuckDB queries it, in a loop.

`reading(table, folder)` runs `python -m tests.support.delta_reader TABLE RECORD STOP` in its own process
(a dashboard is another program, with no JVM, no Spark and no cache shared with the writer) while the
block runs. Each read opens the table afresh (`DeltaTable(path)`: the latest committed version), scans
that one version's files through `to_pyarrow_dataset` with DuckDB, and appends one JSON line to RECORD:
the version and, per (segment, run_date) slice, its row count, distinct users and an MD5 of the sorted
user ids. When the file STOP appears the loop makes one last read and exits, so the record always ends
with the table as the writer left it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# One scan, one version: the aggregate is computed over the dataset of the snapshot that `version` names.
# The MD5 of the sorted ids is the same string Spark gives with md5(concat_ws(',', array_sort(collect_list))).
SLICES_SQL = """
SELECT segment, CAST(run_date AS VARCHAR) AS run_date, count(*) AS n, count(DISTINCT user_id) AS users,
       md5(string_agg(user_id, ',' ORDER BY user_id)) AS ids
FROM members
GROUP BY segment, run_date
"""

Slices = dict[str, list]  # "segment|run_date" -> [rows, distinct users, md5 of the sorted user ids]


def slice_key(segment: str, run_date: object) -> str:
    return f"{segment}|{run_date}"


def read_slices(table: str, version: int | None = None) -> tuple[int, Slices]:
    """The version read and its slices; `version=None` is what a BI tool gets: the newest commit."""
    import duckdb
    from deltalake import DeltaTable

    delta = DeltaTable(table) if version is None else DeltaTable(table, version=version)
    con = duckdb.connect()
    try:
        con.register("members", delta.to_pyarrow_dataset())
        rows = con.sql(SLICES_SQL).fetchall()
    finally:
        con.close()
    return delta.version(), {slice_key(seg, day): [n, users, ids] for seg, day, n, users, ids in rows}


def read_loop(table: str, record: Path, stop: Path, pause_s: float) -> None:
    """Read until `stop` exists, then once more. An exception is recorded, not raised: the test counts them."""
    with record.open("a", encoding="utf-8") as out:
        index, last = 0, False
        while True:
            last = stop.exists()  # checked before the read, so the final read starts after the writer finished
            started = time.time()
            try:
                version, slices = read_slices(table)
                line = {"i": index, "t": started, "version": version, "slices": slices}
            except Exception as exc:  # a torn read would surface here (a missing file, a half-written log entry)
                line = {"i": index, "t": started, "error": f"{type(exc).__name__}: {exc}"}
            out.write(json.dumps(line) + "\n")
            out.flush()  # the test waits on the first lines to know the reader is running
            index += 1
            if last:
                return
            time.sleep(pause_s)


@dataclass
class ReaderRecord:
    """What the reader process saw, one dict per read (see `read_loop`), loaded once the process ended."""

    path: Path
    reads: list[dict] = field(default_factory=list)
    exit_code: int | None = None
    stderr: str = ""

    def load(self) -> list[dict]:
        text = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
        self.reads = [json.loads(line) for line in text.splitlines() if line.strip()]
        return self.reads


def _lines(path: Path) -> int:
    return path.read_text(encoding="utf-8").count("\n") if path.exists() else 0


@contextmanager
def reading(table: str, folder: Path, pause_s: float = 0.01, warm_reads: int = 3,
            start_timeout_s: float = 120.0) -> Iterator[ReaderRecord]:
    """Run the reader process around the block; yields once it has read `warm_reads` times.

    On leaving, the stop file is written and the process is waited for (it reads once more first), and
    the record is loaded. The pause between reads is short: a tight loop, but one that leaves the shared
    cores some room for the writer.
    """
    folder.mkdir(parents=True, exist_ok=True)
    record, stop, errors = folder / "reads.jsonl", folder / "stop", folder / "reader.stderr"
    for stale in (record, stop):
        stale.unlink(missing_ok=True)
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    with errors.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.delta_reader", table, str(record), str(stop), str(pause_s)],
            cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
        )
    result = ReaderRecord(record)
    try:
        deadline = time.monotonic() + start_timeout_s
        while _lines(record) < warm_reads:
            if process.poll() is not None:
                raise AssertionError(f"reader exited {process.returncode} before reading: {errors.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"reader made {_lines(record)} reads in {start_timeout_s:.0f} s")
            time.sleep(0.05)
        yield result
        stop.touch()
        result.exit_code = process.wait(timeout=start_timeout_s)
    finally:
        if process.poll() is None:  # the block failed, or the reader hung: end our own process only
            process.kill()
            process.wait()
        result.stderr = errors.read_text(encoding="utf-8")
        result.load()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table")
    parser.add_argument("record", type=Path)
    parser.add_argument("stop", type=Path)
    parser.add_argument("pause_s", type=float, nargs="?", default=0.01)
    args = parser.parse_args(argv)
    read_loop(args.table, args.record, args.stop, args.pause_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
