"""A non-editable install into a fresh venv, run from a folder outside the checkout, as a new team would.

Only the runtime requirements are installed (no dev extra): a module the jobs import but `setup.py`
leaves to the dev extra fails here, as it would on a fresh machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PROJECT = Path(__file__).resolve().parent.parent
SEGMENT = """
segments:
  - name: buyers
    kind: conversion
    target: {occurs: {events: [Purchase Completed]}}
    past_window: 14d
    prediction_window: 7d
    precision_level: low
    eligible: {active_in: 14d}
    training: {snapshots: 2, stride: 7d, min_positives: 20, min_negatives: 20,
               gbt: {max_iter: 5, max_depth: 3}, search: []}
"""


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (f"{' '.join(command[:4])} exited {result.returncode}\n"
                                    f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-4000:]}")
    return result


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_non_editable_install_runs_the_demo_generator_and_the_night_from_outside_the_checkout(
        tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "SEGMENTS_WORKSPACE", "PYTHONPATH", "VIRTUAL_ENV")}
    env["PYSPARK_PYTHON"] = str(python)
    _run([sys._base_executable, "-m", "venv", str(venv)], tmp_path, env)
    # --no-compile as the Makefile installs: byte-compiling all of pyspark and mlflow is half the install.
    _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile", str(PROJECT)],
         tmp_path, env,
         timeout=1500)

    elsewhere = tmp_path / "team-project"
    elsewhere.mkdir()
    (elsewhere / "segments.yaml").write_text(SEGMENT)
    (elsewhere / "overlay.yaml").write_text(yaml.safe_dump({
        "workspace": "ws",  # relative: the current directory, not the installed package
        "segments_file": "segments.yaml",
        "spark": {"master": "local[2]", "conf": {"spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false",
                                                 "spark.databricks.delta.snapshotPartitions": "2"}},
    }))

    where = _run([str(python), "-c", "import segments_lib, jobs; print(segments_lib.__file__, jobs.__file__)"],
                 elsewhere, env).stdout
    assert str(venv) in where and str(PROJECT) not in where, where

    _run([str(python), "-m", "jobs.generate_demo_events", "--conf", "overlay.yaml", "--users", "400", "--days", "45",
          "--end-date", "2026-06-01", "--truth-days", "0"], elsewhere, env)
    night = _run([str(python), "-m", "jobs.nightly", "--conf", "overlay.yaml", "--date", "2026-06-01"],
                 elsewhere, env).stdout

    line = next(row for row in night.splitlines() if row.startswith("buyers "))
    assert line.split()[1] in ("ok", "precision_unreachable"), night
    for table in ("events", "segment_membership", "segment_runs", "segment_thresholds"):
        assert (elsewhere / "ws" / "tables" / table / "_delta_log").is_dir(), table
    assert (elsewhere / "ws" / "mlflow" / "mlflow.db").is_file()
