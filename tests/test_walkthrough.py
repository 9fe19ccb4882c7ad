"""docs/walkthrough.md, executed as written: demo data, a custom segment, dry run, nightly run, MLflow, SQL.

Blocks preceded by `<!-- walkthrough:KIND [ARG] -->` run in document order:
`file PATH` writes the block to PATH, `run` runs it in bash, `python` runs it with the venv's
interpreter, `sql` sends it to the SQL server (`jobs.sql_server`) over JDBC/Thrift.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.thrift_server import sql_server

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WALKTHROUGH = PROJECT_ROOT / "docs" / "walkthrough.md"
BLOCK = re.compile(r"<!-- walkthrough:(?P<kind>\w+)(?: (?P<arg>[^>]*?))? -->\n```\w*\n(?P<body>.*?)```", re.S)


@dataclass(frozen=True)
class Step:
    kind: str
    arg: str
    body: str


def walkthrough_steps(text: str) -> list[Step]:
    return [Step(m["kind"], (m["arg"] or "").strip(), m["body"]) for m in BLOCK.finditer(text)]


def test_walkthrough_has_every_step_of_the_newcomer_path() -> None:
    steps = walkthrough_steps(WALKTHROUGH.read_text())
    commands = " ".join(s.body for s in steps if s.kind == "run")
    assert [s.kind for s in steps] == ["run", "file", "file", "run", "run", "python", "sql"]
    for module in ("jobs.generate_demo_events", "jobs.check_segments", "jobs.nightly"):
        assert f"python -m {module}" in commands
    assert "mlflow.search_runs" in next(s.body for s in steps if s.kind == "python")


def test_step_parser_reads_kind_argument_and_body() -> None:
    text = "x\n<!-- walkthrough:file $W/a.yaml -->\n```yaml\nk: 1\n```\n<!-- walkthrough:run -->\n```bash\nls\n```\n"
    assert walkthrough_steps(text) == [Step("file", "$W/a.yaml", "k: 1\n"), Step("run", "", "ls\n")]


def _env(workspace: Path) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, "SEGMENTS_WORKSPACE": str(workspace), "PATH": f"{venv_bin}:{os.environ['PATH']}",
            "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}


def _run(command: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, (f"{command[-1][:200]} exited {result.returncode}\n"
                                    f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-5000:]}")
    return result.stdout


def run_step(step: Step, workspace: Path, env: dict[str, str]) -> str | None:
    """Carry out a `file`, `run` or `python` step of a page; the command's stdout, None for a file."""
    if step.kind == "file":
        target = Path(os.path.expandvars(step.arg.replace("$SEGMENTS_WORKSPACE", str(workspace))))
        target.write_text(step.body)
        return None
    if step.kind == "run":
        return _run(["bash", "-euo", "pipefail", "-c", step.body], env)
    if step.kind == "python":
        return _run([sys.executable, "-c", step.body], env)
    raise AssertionError(f"unknown walkthrough step kind {step.kind!r}")


@pytest.mark.slow
@pytest.mark.timeout(3600)  # four JVM starts and a training run; slow on a shared 2-core machine
def test_walkthrough_runs_as_written(tmp_path: Path) -> None:
    from pyhive import hive

    workspace = tmp_path / "workspace-walkthrough"
    workspace.mkdir()
    env = _env(workspace)
    outputs: list[str] = []
    sql_rows: list[tuple] = []
    for step in walkthrough_steps(WALKTHROUGH.read_text()):
        if step.kind == "sql":
            with sql_server(workspace / "my_overlay.yaml", tmp_path / "sql-server.log", env=env) as server:
                connection = hive.connect(host=server.host, port=server.port, auth=server.auth,
                                          database=server.database)
                try:
                    cursor = connection.cursor()
                    cursor.execute(step.body)
                    sql_rows = [tuple(row) for row in cursor.fetchall()]
                finally:
                    connection.close()
        elif (output := run_step(step, workspace, env)) is not None:
            outputs.append(output)

    check_output, nightly_output, mlflow_output = outputs[1], outputs[2], outputs[3]
    assert "browse_and_cart" in check_output
    assert "browse_and_cart" in nightly_output
    run_id, _, rest = mlflow_output.strip().splitlines()[-1].partition(" holdout AUC-PR ")
    assert re.fullmatch(r"[0-9a-f]{32}", run_id), mlflow_output
    assert 0.0 < float(rest.split()[0]) <= 1.0
    # members at the configured level, outside the control group, best first
    assert 0 < len(sql_rows) <= 20
    scores = [row[1] for row in sql_rows]
    assert scores == sorted(scores, reverse=True)
    assert all(tier is not None for _, _, tier in sql_rows)
