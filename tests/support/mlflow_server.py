"""A real MLflow tracking server on loopback: SQLite backend, local artifact store, proxied artifacts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.standalone import free_port


def _mlflow_cli() -> str:
    return str(Path(sys.executable).parent / "mlflow")


def wait_for_health(uri: str, proc: subprocess.Popen, log: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}; log {log}:\n"
                               f"{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"mlflow server at {uri} not healthy within {timeout_s}s; log {log}:\n"
                       f"{log.read_text(errors='replace')[-3000:]}")


class MlflowServerProcess:
    """A running `mlflow server` subprocess: its URI, and `stop()` (idempotent) to take it down."""

    def __init__(self, uri: str, proc: subprocess.Popen, log: Path) -> None:
        self.uri, self.proc, self.log = uri, proc, log

    def stop(self) -> None:
        _stop(self.proc)


def start_mlflow_server(work_dir: Path, backend_db: Path | None = None) -> MlflowServerProcess:
    """Start a server on loopback and wait until it is healthy.

    `backend_db` serves an existing SQLite store (e.g. a workspace's embedded store, whose experiments
    keep their local artifact locations); by default a new store in `work_dir`.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    log = work_dir / "mlflow-server.log"
    database = backend_db or work_dir / "mlflow.db"
    command = [
        _mlflow_cli(), "server",
        "--backend-store-uri", f"sqlite:///{database.as_posix()}",
        "--artifacts-destination", str(work_dir / "artifacts"),
        "--serve-artifacts",
        "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1",
    ]
    # MLflow 3 servers also start seven huey job consumers (about 40 worker threads polling the store)
    # for server-side jobs the project never submits; on 2 cores they only take time from the tests.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=work_dir, start_new_session=True,
                                env=env)
    try:
        wait_for_health(uri, proc, log)
    except BaseException:
        _stop(proc)
        raise
    return MlflowServerProcess(uri, proc, log)


@contextmanager
def mlflow_server(work_dir: Path) -> Iterator[str]:
    """Yield the tracking URI (http://127.0.0.1:<port>) of a running server; stop it on exit."""
    server = start_mlflow_server(work_dir)
    try:
        yield server.uri
    finally:
        server.stop()


def _stop(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        # The server forks uvicorn/gunicorn workers: signal its whole process group, which it leads.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


class MlflowRest:
    """The few REST endpoints the tests read, called over plain HTTP like any other client would."""

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")

    def _call(self, method: str, endpoint: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self.uri}/api/2.0/mlflow/{endpoint}"
        data = None
        if method == "GET" and payload:
            url = f"{url}?{urllib.parse.urlencode(payload)}"
        elif payload is not None:
            data = json.dumps(payload).encode()
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def experiments(self) -> list[dict[str, Any]]:
        return self._call("POST", "experiments/search", {"max_results": 1000}).get("experiments", [])

    def runs(self, experiment_ids: list[str]) -> list[dict[str, Any]]:
        return self._call("POST", "runs/search", {"experiment_ids": experiment_ids, "max_results": 1000}).get(
            "runs", [])

    def registered_model(self, name: str) -> dict[str, Any]:
        return self._call("GET", "registered-models/get", {"name": name})["registered_model"]

    def model_version_by_alias(self, name: str, alias: str) -> dict[str, Any]:
        return self._call("GET", "registered-models/alias", {"name": name, "alias": alias})["model_version"]

    def artifacts(self, run_id: str, path: str = "") -> list[dict[str, Any]]:
        query = {"run_id": run_id, **({"path": path} if path else {})}
        return self._call("GET", "artifacts/list", query).get("files", [])
