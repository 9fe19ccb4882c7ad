"""Cluster mode: the nightly job submitted with spark-submit to a real standalone master and worker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from segments_lib.store import tables
from segments_lib.store.session import submit_args
from tests.conftest import DEMO_END, make_config, write_generated_events
from tests.support.segments import two_small_segments
from tests.support.standalone import spark_env, standalone_cluster

PROJECT = Path(__file__).resolve().parent.parent
RUN_DATE = DEMO_END


@pytest.mark.slow
def test_nightly_job_runs_on_a_standalone_cluster(spark, tmp_path: Path) -> None:
    segments = yaml.safe_load(two_small_segments(retrain_every="30d"))
    segments["segments"] = segments["segments"][:1]  # one segment keeps the cluster run short
    segments_file = tmp_path / "segments.yaml"
    segments_file.write_text(yaml.safe_dump(segments))
    workspace = tmp_path / "ws"
    overlay = tmp_path / "cluster-test.yaml"
    overlay.write_text(yaml.safe_dump({
        "workspace": str(workspace),
        "segments_file": str(segments_file),
        # snapshotPartitions as conf/local.yaml: Delta's default 50 log-replay tasks per table read cost
        # more than the work itself on a one-core executor.
        "spark": {"master": None, "conf": {"spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false",
                                           "spark.databricks.delta.snapshotPartitions": "2"}},
    }))
    cfg = make_config(workspace, segments_file=str(segments_file))
    write_generated_events(spark, cfg, users=800, days=60)

    with standalone_cluster(tmp_path / "cluster") as master_url:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "spark-submit"), "--master", master_url,
             "--executor-memory", "1g", "--total-executor-cores", "1", "--driver-memory", "2g",
             *submit_args(cfg.spark), str(PROJECT / "jobs" / "nightly.py"),
             "--conf", str(overlay), "--date", RUN_DATE.isoformat()],
            capture_output=True, text=True, timeout=1200, cwd=tmp_path, env=spark_env(),
        )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    # The executors ran on the standalone worker: it made a directory for the application.
    assert list((tmp_path / "cluster" / "worker").glob("app-*")), result.stderr[-3000:]
    runs = tables.read_output(spark, cfg, tables.SEGMENT_RUNS).collect()
    assert [(r.segment, r.status in ("ok", "precision_unreachable")) for r in runs] == [("likely_to_purchase", True)]
    members = tables.read_output(spark, cfg, tables.SEGMENT_MEMBERSHIP)
    assert members.count() == runs[0].eligible_count > 0
