"""The project's SQL server (`python -m jobs.sql_server`: Spark Thrift Server) as a child process on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from segments_lib.store.sql_server import SqlServerSettings
from tests.support.standalone import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
READY_MESSAGE = "SQL server ready"


def _wait_until_ready(log: Path, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if READY_MESSAGE in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"SQL server exited with {proc.returncode}; log {log}:\n"
                               f"{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.5)
    raise TimeoutError(f"SQL server not ready within {timeout_s}s; log {log}:\n"
                       f"{log.read_text(errors='replace')[-4000:]}")


@contextmanager
def sql_server(overlay: Path, log: Path, port: int | None = None, timeout_s: float = 240.0,
               extra_args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> Iterator[SqlServerSettings]:
    """Run `jobs.sql_server` with a config overlay; yield its connection settings; SIGTERM it on exit."""
    settings = SqlServerSettings(host="127.0.0.1", port=port or free_port())
    command = [sys.executable, "-m", "jobs.sql_server", "--conf", str(overlay),
               "--host", settings.host, "--port", str(settings.port), *extra_args]
    env = {**os.environ, **(env or {}), "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, env=env,
                                start_new_session=True)
    try:
        _wait_until_ready(log, proc, timeout_s)
        yield settings
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the job stops the Thrift service and Spark, releasing Derby's lock
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
