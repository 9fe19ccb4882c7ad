"""A real Spark standalone master and worker on loopback, launched from the installed pyspark."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyspark


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(log: Path, needle: str, timeout_s: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and needle in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"process exited early; log {log}:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)
    raise TimeoutError(f"'{needle}' not seen in {log} within {timeout_s}s:\n{log.read_text(errors='replace')[-3000:]}")


def spark_env() -> dict[str, str]:
    env = dict(os.environ)
    env["SPARK_HOME"] = str(Path(pyspark.__file__).parent)
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    env["SPARK_MASTER_OPTS"] = "-Dspark.master.rest.enabled=false"
    return env


@contextmanager
def standalone_cluster(work_dir: Path, worker_cores: int = 1, worker_memory: str = "2g") -> Iterator[str]:
    """Yield the master URL of a running one-worker standalone cluster; stop both on exit."""
    spark_class = str(Path(pyspark.__file__).parent / "bin" / "spark-class")
    env = spark_env()
    work_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    master_url = f"spark://127.0.0.1:{port}"
    master_log, worker_log = work_dir / "master.log", work_dir / "worker.log"
    procs: list[subprocess.Popen] = []
    try:
        with master_log.open("w") as out:
            procs.append(subprocess.Popen(
                [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                 "--port", str(port), "--webui-port", str(free_port())],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            ))
        _wait_for(master_log, "New state: ALIVE", 90, procs[0])
        with worker_log.open("w") as out:
            procs.append(subprocess.Popen(
                [spark_class, "org.apache.spark.deploy.worker.Worker", master_url, "--host", "127.0.0.1",
                 "--cores", str(worker_cores), "--memory", worker_memory, "--webui-port", str(free_port()),
                 "--work-dir", str(work_dir / "worker")],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            ))
        _wait_for(worker_log, "Successfully registered with master", 90, procs[1])
        yield master_url
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
