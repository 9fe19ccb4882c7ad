"""Environment failures (no Java, Delta JARs that cannot be resolved) stop a job with exit code 2 and a
one-line reason naming the setting to fix, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from segments_lib.store.session import EnvironmentProblem, resolve_with_maven
from tests.conftest import make_config

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def job_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This environment without Java: JAVA_HOME and PATH replaced, the workspace in tmp_path."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAVA_HOME", "MLFLOW_TRACKING_URI", "PYSPARK_GATEWAY_PORT", "SPARK_HOME")}
    no_java = tmp_path / "bin-without-java"
    no_java.mkdir(exist_ok=True)
    env.update(PATH=str(no_java), SEGMENTS_WORKSPACE=str(tmp_path / "ws"), **extra)
    return env


def run(module: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def assert_one_line_reason(result: subprocess.CompletedProcess[str], reason: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in output.splitlines() if reason in line]
    assert len(lines) == 1, output[-3000:]
    assert lines[0].endswith(reason)


def test_nightly_without_java_exits_2_naming_java_home(tmp_path: Path) -> None:
    empty = tmp_path / "empty-java-home"
    empty.mkdir()
    result = run("jobs.nightly", ["--date", "2026-06-01"], job_env(tmp_path, JAVA_HOME=str(empty)))
    assert_one_line_reason(result, f"JAVA_HOME={empty} has no bin/java, and Spark runs the java under JAVA_HOME: "
                                   "point JAVA_HOME at a Java 17+ installation, or unset it to use java from PATH.")
    assert "ERROR jobs.nightly:" in result.stderr


def test_nightly_without_java_home_and_without_java_on_path_exits_2(tmp_path: Path) -> None:
    result = run("jobs.nightly", ["--date", "2026-06-01"], job_env(tmp_path))
    assert_one_line_reason(result, "Java not found: Spark 4 needs Java 17 or newer, and there is no JAVA_HOME and no "
                                   "java on PATH. Install it (e.g. `apt-get install openjdk-17-jdk-headless`) or set "
                                   "JAVA_HOME.")


@pytest.mark.parametrize(("module", "args", "prefix"), [
    ("jobs.check_segments", ["--date", "2026-06-01"], "check_segments: "),
    ("jobs.demo", [], "ERROR jobs.demo: "),
    ("jobs.sql_server", ["--register-only"], "ERROR jobs.sql_server: "),
    ("segments_lib.store.session", [], "session: "),
])
def test_every_entry_point_reports_a_missing_java_the_same_way(tmp_path: Path, module: str, args: list[str],
                                                               prefix: str) -> None:
    empty = tmp_path / "empty-java-home"
    empty.mkdir()
    result = run(module, args, job_env(tmp_path, JAVA_HOME=str(empty)))
    assert_one_line_reason(result, f"JAVA_HOME={empty} has no bin/java, and Spark runs the java under JAVA_HOME: "
                                   "point JAVA_HOME at a Java 17+ installation, or unset it to use java from PATH.")
    assert prefix + f"JAVA_HOME={empty}" in result.stderr


@pytest.mark.skipif(shutil.which("java") is None and not os.environ.get("JAVA_HOME"), reason="needs Java")
def test_missing_delta_jars_exit_2_naming_spark_delta_jars(tmp_path: Path) -> None:
    overlay = tmp_path / "jars.yaml"
    overlay.write_text("spark:\n  delta_jars: [/nonexistent/delta-spark.jar]\n")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PYSPARK_GATEWAY_PORT")}
    env["SEGMENTS_WORKSPACE"] = str(tmp_path / "ws")
    result = run("jobs.nightly", ["--conf", str(overlay), "--date", "2026-06-01"], env)
    assert_one_line_reason(result, "spark.delta_jars lists JARs that do not exist: /nonexistent/delta-spark.jar; "
                                   "fix the paths in spark.delta_jars (or empty it to resolve spark.delta_package)")


def test_unresolvable_delta_package_is_one_line_naming_the_settings(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config(tmp_path / "ws", spark={"delta_package": "io.delta:delta-spark_9.9_2.13:0.0.1",
                                              "jars_cache_dir": str(tmp_path / "jars")}).spark
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(EnvironmentProblem) as caught:
        resolve_with_maven(cfg)
    assert str(caught.value) == (
        "could not resolve io.delta:delta-spark_9.9_2.13:0.0.1: Ivy failed and Maven (mvn) is not installed to "
        "retry; check spark.delta_package (io.delta:delta-spark_9.9_2.13:0.0.1) and access to Maven Central, or "
        "list pre-downloaded JARs in spark.delta_jars.")

    mvn = bin_dir / "mvn"  # a Maven that fails the way an offline one does
    mvn.write_text("#!/bin/sh\necho '[ERROR] Failed to execute goal on project delta-jars'\n"
                   "echo '[ERROR] Could not transfer artifact from/to central: Network is unreachable'\nexit 1\n")
    mvn.chmod(0o755)
    with pytest.raises(EnvironmentProblem) as caught:
        resolve_with_maven(cfg)
    assert str(caught.value) == (
        "could not resolve io.delta:delta-spark_9.9_2.13:0.0.1 with Ivy or Maven (Maven: [ERROR] Could not transfer "
        "artifact from/to central: Network is unreachable); check spark.delta_package "
        "(io.delta:delta-spark_9.9_2.13:0.0.1) and access to Maven Central, or list pre-downloaded JARs in "
        "spark.delta_jars.")
    assert "\n" not in str(caught.value)


def test_a_second_process_waits_for_the_jar_resolution_lock_until_the_first_releases_it(tmp_path: Path) -> None:
    """Ivy cannot share its cache with a concurrent resolution: the second job (or test worker) that
    finds no cached JARs waits on the cache's lock file, then reads the manifest the first one wrote."""
    from segments_lib.store.session import _resolution_lock

    cfg = make_config(tmp_path / "ws", spark={"jars_cache_dir": str(tmp_path / "jars")})
    waiter = ("from types import SimpleNamespace; from pathlib import Path; "
              "from segments_lib.store.session import _resolution_lock\n"
              f"cache = SimpleNamespace(jars_cache_dir=Path({str(tmp_path / 'jars')!r}))\n"
              "print('waiting', flush=True)\n"
              "with _resolution_lock(cache): print('acquired', flush=True)")
    with _resolution_lock(cfg.spark):
        second = subprocess.Popen([sys.executable, "-c", waiter], stdout=subprocess.PIPE, text=True,
                                  cwd=Path(__file__).resolve().parent.parent)
        assert second.stdout.readline().strip() == "waiting"
        with pytest.raises(subprocess.TimeoutExpired):
            second.wait(timeout=3)  # blocked the whole time this process holds the lock
    out, _ = second.communicate(timeout=60)
    assert out.strip() == "acquired" and second.returncode == 0
