"""A BI reader (delta-rs + DuckDB, another process) reads segment_membership in a loop while the nightly
job writes it: every read is one whole committed version, never a partial night (issue 23, item 3).

The writer is the real job (`runner.run_job`, in this process and its Spark session, so no second JVM)
on the session's trained workspace: one segment, scoring only (`--retrain never`), a night the table
does not hold yet (2026-05-28, between the trained nights) and a rerun of the newest trained night
(2026-06-01, the idempotent case). Each night replaces its (segment, run_date) slice with one
`replaceWhere` commit, so the reader can only ever meet three versions, each hand-predicted below.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
from datetime import date
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from segments_lib.config import AppConfig
from segments_lib.job.runner import run_job
from segments_lib.store import tables
from tests.conftest import DEMO_END, SHARED_WORKSPACE_GROUP, TRAINED_NIGHTS
from tests.support.delta_reader import Slices, read_slices, reading, slice_key
from tests.support.workspaces import restored_afterwards

pytestmark = SHARED_WORKSPACE_GROUP  # built once, on one worker (tests/conftest.py)

SEGMENT = "likely_to_purchase"
NEW_NIGHT = date(2026, 5, 28)  # not a trained night: the job adds its slice
RERUN_NIGHT = DEMO_END  # the newest trained night: the job replaces its slice with the same rows
# The job runs for tens of seconds and a read takes tens of milliseconds, so far more reads than these
# happen; the floors only make sure the test cannot pass with a reader that barely ran.
MIN_READS_DURING_JOB = 20


def spark_slices(spark: SparkSession, path: str, version: int) -> Slices:
    """The same per-slice figures as the reader's DuckDB query, computed by Spark at `version`."""
    rows = (
        tables.read_delta(spark, path, version)
        .groupBy("segment", "run_date")
        .agg(F.count("*").alias("n"), F.countDistinct("user_id").alias("users"),
             F.md5(F.concat_ws(",", F.array_sort(F.collect_list("user_id")))).alias("ids"))
        .collect()
    )
    return {slice_key(r.segment, r.run_date): [r.n, r.users, r.ids] for r in rows}


def slice_files(path: str, version: int, run_date: date) -> set[str]:
    """The data files of SEGMENT's slice for `run_date` at `version`: a rewrite gives new ones."""
    return set(DeltaTable(path, version=version).file_uris(
        partition_filters=[("segment", "=", SEGMENT), ("run_date", "=", run_date.isoformat())]))


def eligible_counts(spark: SparkSession, cfg: AppConfig) -> dict[date, int]:
    runs = tables.read_output(spark, cfg, tables.SEGMENT_RUNS).where(f"segment = '{SEGMENT}'").collect()
    return {r.run_date: r.eligible_count for r in runs}


def has_checkpoint(path: str, version: int) -> bool:
    return any(Path(path, "_delta_log").glob(f"{version:020d}.checkpoint*.parquet"))


@pytest.mark.slow
def test_a_bi_reader_sees_one_whole_version_on_every_read_while_the_nightly_job_writes(
    spark: SparkSession, trained_workspace: AppConfig, tmp_path: Path,
) -> None:
    cfg = trained_workspace
    path = str(tables.output_path(cfg, tables.SEGMENT_MEMBERSHIP))
    new_key, rerun_key = slice_key(SEGMENT, NEW_NIGHT), slice_key(SEGMENT, RERUN_NIGHT)
    assert NEW_NIGHT not in TRAINED_NIGHTS and RERUN_NIGHT in TRAINED_NIGHTS

    with restored_afterwards(spark, cfg.workspace.path):
        # A checkpoint after every commit (Delta's default is every 10th): each commit the reader meets
        # is also a checkpoint being written beside it, the moment delta-rs changes where it starts
        # replaying the log. One metadata commit, made before the reader starts.
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.checkpointInterval' = '1')")
        first, before = read_slices(path)
        assert before == spark_slices(spark, path, first)
        assert new_key not in before and rerun_key in before
        rerun_files_before = slice_files(path, first, RERUN_NIGHT)

        with reading(path, tmp_path / "reader") as record:
            job_started = time.time()
            exit_code = run_job(cfg, [NEW_NIGHT, RERUN_NIGHT], SEGMENT, "never")
            job_ended = time.time()
        assert exit_code == 0

        reads = record.reads
        assert record.exit_code == 0, record.stderr
        errors = [r for r in reads if "error" in r]
        assert not errors, f"{len(errors)} of {len(reads)} reads failed, first: {errors[0]}"

        # One commit per night, nothing else: no delete-then-append, no separate property commit.
        last = reads[-1]["version"]
        assert last == first + 2
        history = {h["version"]: h for h in DeltaTable(path).history(2)}
        for version, night in ((first + 1, NEW_NIGHT), (first + 2, RERUN_NIGHT)):
            commit = history[version]
            assert commit["operation"] == "WRITE", commit
            assert commit["operationParameters"]["mode"] == "Overwrite", commit
            assert night.isoformat() in json.dumps(commit["operationParameters"]), commit  # its replaceWhere
            assert has_checkpoint(path, version)  # the reader raced a checkpoint write at every commit
        assert slice_files(path, last, RERUN_NIGHT).isdisjoint(rerun_files_before)  # rewritten, not skipped

        # Not vacuous: the reader ran all through the job and met every version, including the one
        # between the two nights (new night in, rerun night still the old files). The nights' commits
        # are tens of seconds apart (thresholds, drift, backtest, runs, the next night's scoring).
        during = [r for r in reads if job_started <= r["t"] <= job_ended]
        observed = sorted({r["version"] for r in reads})
        assert len(during) >= MIN_READS_DURING_JOB, (len(during), len(reads))
        assert observed == [first, first + 1, first + 2], observed

        # Each read equals its version read afterwards by time travel, by delta-rs and by Spark alike.
        at_version = {}
        for version in observed:
            read_version, slices = read_slices(path, version)
            assert read_version == version
            assert slices == spark_slices(spark, path, version), version
            at_version[version] = slices
        torn = [r for r in reads if r["slices"] != at_version[r["version"]]]
        assert not torn, f"{len(torn)} reads differ from their version, first: {torn[0]}"

        # Hand-predicted contents. The rerun night is the same users again (reruns are idempotent),
        # the new night holds one row per eligible user, the other slices never change.
        after = at_version[last]
        eligible = eligible_counts(spark, cfg)
        assert after[new_key][:2] == [eligible[NEW_NIGHT], eligible[NEW_NIGHT]] and eligible[NEW_NIGHT] > 0
        assert after[rerun_key] == before[rerun_key]
        assert before[rerun_key][:2] == [eligible[RERUN_NIGHT], eligible[RERUN_NIGHT]]
        untouched = {k: v for k, v in before.items() if k != rerun_key}
        assert set(after) == set(before) | {new_key}
        for r in reads:
            seen = r["slices"]
            assert set(seen) <= set(after), r
            assert {k: seen.get(k) for k in untouched} == untouched, r
            # Never missing (deleted, not yet rewritten), never doubled (appended next to the old rows).
            assert seen[rerun_key] in (before[rerun_key], after[rerun_key]), r
            assert seen.get(new_key) in (None, after[new_key]), r  # absent, or the whole night
        assert at_version[first + 1][new_key] == after[new_key]
        assert at_version[first + 1][rerun_key] == before[rerun_key]

        gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(reads)]
        print(f"\nreader: {len(reads)} reads ({len(during)} during the {job_ended - job_started:.1f} s job), "
              f"versions {observed} (reads per version "
              f"{[sum(r['version'] == v for r in reads) for v in observed]}), "
              f"median {statistics.median(gaps) * 1000:.0f} ms per read, slices per read {len(after)}")
