"""A night on object storage: events, every table and the MLflow artifacts on a real S3 server.

The server is SeaweedFS on loopback (`tests.support.object_store`), started here and stopped after.
Jobs run as subprocesses exactly as a deployment runs them (`python -m jobs.nightly --conf <overlay>`)
with the S3A connector in `spark.extra_packages` and the credentials in the environment only. The
results are read back without Spark: delta-rs + DuckDB straight from S3, boto3 for the artifacts.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
import yaml
from deltalake import DeltaTable, write_deltalake

from segments_lib.intake.demo import EVENTS_ARROW_SCHEMA
from tests.conftest import TEST_SPARK_CONF
from tests.support.object_store import BUCKET, S3A_EXCLUDES, S3A_PACKAGES, SECRET_KEY, S3Server
from tests.support.segments import two_small_segments
from tests.support.standalone import spark_env, standalone_cluster

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FIRST_NIGHT = date(2026, 6, 1)
KILL_NIGHT = FIRST_NIGHT + timedelta(days=7)  # P3 = 7d: this night also judges the first one (backtest)
EVENTS_END = FIRST_NIGHT + timedelta(days=10)
PURCHASE = "likely_to_purchase"
TIMEOUT_S = 1800  # per job: generous, since a loaded 2-core machine ran the cluster night for 15 min
LAKE = f"s3a://{BUCKET}"
SEGMENTS = two_small_segments(min_examples=10, max_iter=5)


@dataclass(frozen=True)
class Lake:
    server: S3Server
    root: Path  # local folder: the overlays, the MLflow tracking database, the job logs

    def overlay(self, prefix: str, name: str = "overlay.yaml", **changes: object) -> Path:
        """A config overlay with every location under `s3a://lake/<prefix>/` (the events are shared)."""
        path = self.root / prefix / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({**self.settings(prefix), **changes}))
        return path

    def settings(self, prefix: str) -> dict:
        return {
            "workspace": str(self.root / prefix / "ws"),
            # The validated events follow the workspace's other tables into the bucket; left at its
            # default (relative to the local workspace) it would land on the driver's disk.
            "events": {"path": f"{LAKE}/events", "validated_path": f"{LAKE}/{prefix}/events_validated"},
            "output": {"root": f"{LAKE}/{prefix}/tables"},
            "quarantine_path": f"{LAKE}/{prefix}/quarantine",
            "segments_file": f"{LAKE}/conf/segments.yaml",
            "mlflow": {"tracking_uri": f"sqlite:///{self.root / prefix / 'mlflow.db'}",
                       "artifact_location": f"{LAKE}/{prefix}/mlflow"},
            "spark": {"master": "local[1]", "extra_packages": S3A_PACKAGES, "exclude_packages": S3A_EXCLUDES,
                      "conf": {**TEST_SPARK_CONF, **self.server.spark_conf(), "spark.driver.memory": "1g"}},
        }

    def env(self, secret: str = SECRET_KEY) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SEGMENTS_WORKSPACE")}
        return {**env, **self.server.client_env(secret), "PYSPARK_PYTHON": sys.executable}

    def run(self, *args: str, secret: str = SECRET_KEY) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", *args], cwd=PROJECT_ROOT, env=self.env(secret),
                              capture_output=True, text=True, timeout=TIMEOUT_S, check=False)

    def table(self, prefix: str, name: str) -> DeltaTable:
        return DeltaTable(f"s3://{BUCKET}/{prefix}/tables/{name}")

    def rows(self, prefix: str, name: str) -> list[tuple]:
        frame = self.table(prefix, name).to_pandas()
        return sorted(map(tuple, frame.astype(str).itertuples(index=False)))


def nightly(lake: Lake, prefix: str, night: date, *extra: str, secret: str = SECRET_KEY):
    return lake.run("jobs.nightly", "--conf", str(lake.overlay(prefix)), "--date", night.isoformat(), *extra,
                    secret=secret)


def bad_rows() -> pa.Table:
    """Rows the validation must quarantine: no user, and an event stamped in the future."""
    future = datetime.now(timezone.utc) + timedelta(days=400)
    when = datetime(2026, 5, 30, 12, tzinfo=timezone.utc)
    return pa.Table.from_pylist([
        {"user_id": None, "event_name": "Open App", "event_time": when, "event_value": None,
         "event_date": when.date()},
        {"user_id": "u-future", "event_name": "Open App", "event_time": future, "event_value": None,
         "event_date": future.date()},
    ], schema=EVENTS_ARROW_SCHEMA)


def submit_to_a_standalone_cluster(lake: Lake, prefix: str, night: date) -> subprocess.CompletedProcess:
    """The night by spark-submit to a real standalone master and worker, from a folder outside the repo
    that holds only the overlay and the segments file (shipped with --files); the executors get the S3A
    JARs by --jars and the credentials from the worker's environment. Later nights of the same tables
    run in local mode: the same job, unchanged."""
    submit_dir = lake.root / "submit"
    submit_dir.mkdir()
    (submit_dir / "segments.yaml").write_text(SEGMENTS)
    settings = lake.settings(prefix)
    settings["segments_file"] = "segments.yaml"
    settings["spark"] = {**settings["spark"], "master": None, "conf": {
        **settings["spark"]["conf"], "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2"}}
    (submit_dir / "cluster.yaml").write_text(yaml.safe_dump(settings))
    # The documented command resolves and caches the JARs (Delta's and S3A's) in its own process and
    # prints the flags; resolving here would start a Spark session inside the test process.
    resolved = lake.run("segments_lib.store.session", "--conf", str(submit_dir / "cluster.yaml"), "--submit-args")
    assert resolved.returncode == 0, resolved.stderr[-3000:]
    jar_flags = resolved.stdout.strip().splitlines()[-1].split()
    assert jar_flags[0] == "--jars" and "hadoop-aws-3.5.0.jar" in jar_flags[1]
    with standalone_cluster(lake.root / "standalone") as master_url:  # inherits the S3 environment
        return subprocess.run(
            [str(Path(sys.executable).parent / "spark-submit"), "--master", master_url,
             "--executor-memory", "1g", "--total-executor-cores", "1", "--driver-memory", "1g",
             *jar_flags, "--files", "cluster.yaml,segments.yaml",
             str(PROJECT_ROOT / "jobs" / "nightly.py"),
             "--conf", "cluster.yaml", "--segments-file", "segments.yaml", "--date", night.isoformat()],
            capture_output=True, text=True, timeout=TIMEOUT_S, cwd=submit_dir, env={**spark_env(), **lake.env()},
        )


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    root = tmp_path_factory.mktemp("object-store")
    server = S3Server(root / "seaweedfs")
    server.start()
    lake = Lake(server, root)
    os.environ.update(server.client_env())  # delta-rs and pyarrow in this process read the same variables
    try:
        server.client().put_object(Bucket=BUCKET, Key="conf/segments.yaml",
                                   Body=SEGMENTS.encode())
        generated = lake.run("jobs.generate_demo_events", "--conf", str(lake.overlay("main")), "--users", "500",
                             "--days", "60", "--end-date", EVENTS_END.isoformat(), "--truth-days", "0")
        assert generated.returncode == 0, generated.stderr[-3000:]
        write_deltalake(f"s3://{BUCKET}/events", bad_rows(), mode="append", partition_by=["event_date"])
        first = submit_to_a_standalone_cluster(lake, "main", FIRST_NIGHT)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
        (root / "first-night.log").write_text(first.stdout + first.stderr)
        yield lake
    finally:
        server.stop()
        for key in server.client_env():
            os.environ.pop(key, None)


def test_the_whole_night_reads_and_writes_object_storage(lake: Lake) -> None:
    db = duckdb.connect()
    db.register("membership", lake.table("main", "segment_membership").to_pyarrow_dataset())
    counts = db.sql("SELECT segment, run_date, count(*) AS n, count(DISTINCT user_id) AS users "
                        "FROM membership GROUP BY ALL ORDER BY segment").fetchall()
    assert [(segment, run_date) for segment, run_date, _, _ in counts] == [
        ("engagement_booster", FIRST_NIGHT), (PURCHASE, FIRST_NIGHT)]
    assert all(n == users and n > 0 for _, _, n, users in counts)  # one row per user, nobody twice
    for table in ("segment_thresholds", "segment_runs"):  # the backtest: see the later night's test
        assert lake.table("main", table).version() >= 0, table
    runs = lake.table("main", "segment_runs").to_pandas()
    assert len(runs) == 2 and set(runs["status"]) <= {"ok", "precision_unreachable"}  # 500 users: tiny levels

    quarantine = DeltaTable(f"s3://{BUCKET}/main/quarantine").to_pandas()
    assert len(quarantine) == 2, "the two bad rows appended to the events"
    assert set(quarantine["run_date"].astype(str)) == {FIRST_NIGHT.isoformat()}

    # Nothing landed on the local disk where the URIs would once have collapsed ('<cwd>/s3a:/lake/...').
    assert not (PROJECT_ROOT / "s3a:").exists()
    assert not (lake.root / "main" / "ws" / "tables").exists()


def test_mlflow_artifacts_are_in_the_bucket(lake: Lake) -> None:
    with sqlite3.connect(lake.root / "main" / "mlflow.db") as db:
        artifact_uris = [uri for (uri,) in db.execute("SELECT artifact_uri FROM runs")]
        params = dict(db.execute("SELECT key, value FROM params"))
    assert artifact_uris and all(uri.startswith(f"s3://{BUCKET}/main/mlflow/") for uri in artifact_uris)
    models = [k for k in lake.server.keys("main/mlflow/") if k.endswith("/MLmodel")]
    assert len(models) == 2, models  # one trained model per segment
    assert SECRET_KEY not in json.dumps(params)


def test_secrets_never_reach_the_logs_or_the_tables(lake: Lake) -> None:
    log = (lake.root / "first-night.log").read_text()
    assert "Night 2026-06-01" in log  # the summary was printed
    assert SECRET_KEY not in log
    runs = lake.table("main", "segment_runs").to_pandas()
    assert SECRET_KEY not in runs.to_json()


def test_wrong_credentials_exit_2_with_one_line_naming_the_location(lake: Lake) -> None:
    wrong = "not-the-secret-5b1e"
    result = nightly(lake, "wrong-credentials", FIRST_NIGHT, secret=wrong)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert errors and f"{LAKE}/wrong-credentials/tables (output.root in config) is not writable" in errors[-1]
    assert "403" in errors[-1] or "Forbidden" in errors[-1] or "AccessDenied" in errors[-1]
    assert wrong not in result.stdout + result.stderr
    assert lake.server.keys("wrong-credentials/") == []


def test_the_server_stopped_mid_membership_write_leaves_old_or_whole_and_a_rerun_equals_a_clean_run(
        lake: Lake) -> None:
    # A clean copy of the workspace after the first night: the reference night runs on it.
    assert lake.server.copy_prefix("main/", "clean/") > 0
    (lake.root / "clean").mkdir(exist_ok=True)
    (lake.root / "clean" / "mlflow.db").write_bytes((lake.root / "main" / "mlflow.db").read_bytes())
    before = lake.rows("main", "segment_membership")

    job = subprocess.Popen(
        [sys.executable, "-m", "jobs.nightly", "--conf", str(lake.overlay("main")), "--date",
         KILL_NIGHT.isoformat(), "--retrain", "never"],
        cwd=PROJECT_ROOT, env=lake.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    marker = f"▶ [{PURCHASE} {KILL_NIGHT}] write membership"
    seen: list[str] = []
    try:
        for line in job.stderr:
            seen.append(line)
            if marker in line:
                lake.server.stop()
                break
        else:
            raise AssertionError(f"the job never reached the membership write:\n{''.join(seen[-40:])}")
        job.communicate(timeout=TIMEOUT_S)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=60)
        if lake.server.process is None:
            time.sleep(1)
            lake.server.start()
    assert job.returncode != 0, "the night cannot have succeeded without its storage"

    clean = nightly(lake, "clean", KILL_NIGHT, "--retrain", "never")
    assert clean.returncode == 0, clean.stderr[-4000:]
    clean_rows = lake.rows("clean", "segment_membership")
    new_night = [r for r in clean_rows if r not in before]
    assert new_night, "the clean night scored nobody: the test would prove nothing"

    # Delta's commit is one object written last: the table is the old version or the complete new one.
    after_stop = lake.rows("main", "segment_membership")
    assert after_stop in (before, sorted(before + [r for r in new_night if PURCHASE in r]))

    rerun = nightly(lake, "main", KILL_NIGHT, "--retrain", "never")
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert lake.rows("main", "segment_membership") == clean_rows
    # The night's P3 closed the first night's window: its ledger row is on S3 too, the same as the clean run's.
    backtest = lake.rows("main", "segment_backtest")
    assert backtest and backtest == lake.rows("clean", "segment_backtest")


def test_the_first_night_ran_on_the_standalone_cluster(lake: Lake) -> None:
    """The fixture's first night was submitted to the cluster: its executors ran on the worker, and the
    tables the test above reads were written by them."""
    assert list((lake.root / "standalone" / "worker").glob("app-*")), "no executor ran on the worker"
    log = (lake.root / "first-night.log").read_text()
    assert "master=spark://127.0.0.1:" in log
