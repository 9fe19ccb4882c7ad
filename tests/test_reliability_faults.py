"""Faults survived: a real SIGKILL mid-write and mid-night, two concurrent writers, a lost tracking store.

The jobs run as real subprocesses (`python -m jobs.nightly --conf overlay.yaml`) killed with SIGKILL on
their whole process group (Python driver and its Spark JVM), the way a lost node dies. One small demo
workspace is prepared per module and a first clean night trains the champions the later nights use.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from segments_lib.config import AppConfig, load_config
from segments_lib.job.runner import run_job
from segments_lib.store import tables
from tests.conftest import TEST_SPARK_CONF
from tests.support.segments import two_small_segments
from tests.support.workspaces import restore, snapshot

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FIRST_NIGHT = date(2026, 6, 1)
EVENTS_END = FIRST_NIGHT + timedelta(days=10)  # events after the first night, so later nights have labels
KILL_NIGHT = FIRST_NIGHT + timedelta(days=1)
CONCURRENT_NIGHT = FIRST_NIGHT + timedelta(days=2)
RETRAIN_NIGHT = FIRST_NIGHT + timedelta(days=7)  # champion is 7 days old: retraining is due
PURCHASE, ENGAGEMENT = "likely_to_purchase", "engagement_booster"
SUBPROCESS_TIMEOUT_S = 900

SEGMENTS = two_small_segments(min_examples=10, max_iter=5)


@dataclass(frozen=True)
class Workspace:
    cfg: AppConfig
    overlay: Path
    clean_copy: Path  # the workspace as it stood after the first clean night


def overlay_for(workspace: Path, segments_file: Path) -> dict:
    return {
        "workspace": str(workspace),
        "segments_file": str(segments_file),
        # A nested output root that does not exist yet: the first night must create it.
        "output": {"root": "out/tables"},
        "mlflow": {"tracking_uri": f"sqlite:///{workspace / 'mlflow' / 'mlflow.db'}"},
        "spark": {"master": "local[1]", "conf": {**TEST_SPARK_CONF, "spark.driver.memory": "1g"}},
    }


@pytest.fixture(scope="module")
def workspace(spark, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    from segments_lib.intake.demo import generate_events

    root = tmp_path_factory.mktemp("faults")
    segments_file = root / "segments.yaml"
    segments_file.write_text(SEGMENTS)
    overlay = root / "overlay.yaml"
    overlay.write_text(yaml.safe_dump(overlay_for(root / "ws", segments_file)))
    cfg = load_config(str(overlay))
    assert not cfg.output.root.path.exists()
    events = generate_events(users=500, days=60, end_date=EVENTS_END, seed=11)
    (spark.createDataFrame(events.to_pandas()).write.format("delta").mode("overwrite")
     .partitionBy("event_date").save(str(cfg.events.path)))
    assert run_job(cfg, [FIRST_NIGHT], None, "auto") == 0
    assert cfg.output.root.path.is_dir()
    clean_copy = snapshot(root / "ws", root / "clean_copy")
    return Workspace(cfg, overlay, clean_copy)


@pytest.fixture(autouse=True)
def _from_the_clean_first_night(request: pytest.FixtureRequest) -> None:
    """Every test starts from the workspace as the first clean night left it, whatever ran before it."""
    if "workspace" not in request.fixturenames:
        return
    workspace: Workspace = request.getfixturevalue("workspace")
    restore(request.getfixturevalue("spark"), workspace.cfg.workspace.path, workspace.clean_copy)


def job_command(overlay: Path, run_date: date, *extra: str) -> list[str]:
    return [sys.executable, "-m", "jobs.nightly", "--conf", str(overlay), "--date", run_date.isoformat(), *extra]


def job_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SEGMENTS_WORKSPACE")}
    env["PYSPARK_PYTHON"] = sys.executable
    return env


def start_job(overlay: Path, run_date: date, *extra: str) -> subprocess.Popen:
    # Own process group: the kill takes the Spark JVM down with the Python driver, as a crashed node would.
    return subprocess.Popen(job_command(overlay, run_date, *extra), cwd=PROJECT_ROOT, env=job_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_when_logged(job: subprocess.Popen, marker: str) -> list[str]:
    """SIGKILL the job's process group the moment `marker` appears on its stderr; the lines read so far."""
    seen: list[str] = []
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
    for line in job.stderr:
        seen.append(line)
        if marker in line:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=60)
            return seen
        if time.monotonic() > deadline:
            break
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=60)
    raise AssertionError(f"job ended (exit {job.returncode}) before logging {marker!r}:\n{''.join(seen[-40:])}")


def table_rows(spark, cfg: AppConfig, table: str) -> list[tuple]:
    frame = tables.read_output(spark, cfg, table)
    assert frame is not None, f"{table} was never written"
    return sorted((tuple(r) for r in frame.collect()), key=repr)


def runs_rows(spark, cfg: AppConfig, segment: str, run_date: date) -> list:
    runs = tables.read_output(spark, cfg, tables.SEGMENT_RUNS)
    return runs.where(f"segment = '{segment}' AND run_date = DATE'{run_date}'").collect()


def membership_slice(rows: list[tuple], segment: str, run_date: date) -> list[tuple]:
    return [r for r in rows if r[0] == run_date and r[1] == segment]


@pytest.mark.slow
def test_sigkill_during_membership_write_leaves_old_or_new_table_and_rerun_matches_clean(
        spark, workspace: Workspace, tmp_path: Path) -> None:
    cfg = workspace.cfg
    before = table_rows(spark, cfg, tables.SEGMENT_MEMBERSHIP)
    assert {(r[0], r[1]) for r in before} == {(FIRST_NIGHT, PURCHASE), (FIRST_NIGHT, ENGAGEMENT)}

    job = start_job(workspace.overlay, KILL_NIGHT, "--retrain", "never")
    kill_when_logged(job, f"▶ [{PURCHASE} {KILL_NIGHT}] write membership")
    assert job.returncode == -signal.SIGKILL
    after_kill = table_rows(spark, cfg, tables.SEGMENT_MEMBERSHIP)

    # The reference: the same night run cleanly on a copy of the workspace as it stood before the kill.
    reference = snapshot(workspace.clean_copy, tmp_path / "reference")
    clean_cfg = load_config(None, overrides={**overlay_for(reference, Path(cfg.segments_file))})
    assert run_job(clean_cfg, [KILL_NIGHT], None, "never") == 0
    clean = table_rows(spark, clean_cfg, tables.SEGMENT_MEMBERSHIP)
    clean_night = membership_slice(clean, PURCHASE, KILL_NIGHT)
    assert clean_night, "the clean run scored nobody: the test would prove nothing"

    # Delta commits atomically: the killed job's night is either absent or complete, never partial.
    assert after_kill in (before, sorted(before + clean_night, key=repr))

    assert run_job(cfg, [KILL_NIGHT], None, "never") == 0
    assert table_rows(spark, cfg, tables.SEGMENT_MEMBERSHIP) == clean
    assert len(runs_rows(spark, cfg, PURCHASE, KILL_NIGHT)) == 1


@pytest.mark.slow
def test_two_concurrent_nightly_runs_for_different_segments_both_succeed_and_lose_nothing(
        spark, workspace: Workspace) -> None:
    cfg = workspace.cfg
    before = table_rows(spark, cfg, tables.SEGMENT_MEMBERSHIP)
    jobs = {name: start_job(workspace.overlay, CONCURRENT_NIGHT, "--segments", name, "--retrain", "never")
            for name in (PURCHASE, ENGAGEMENT)}
    outputs = {name: job.communicate(timeout=SUBPROCESS_TIMEOUT_S) for name, job in jobs.items()}
    for name, job in jobs.items():
        assert job.returncode == 0, f"{name} exited {job.returncode}:\n{outputs[name][1][-4000:]}"

    after = table_rows(spark, cfg, tables.SEGMENT_MEMBERSHIP)
    assert [r for r in after if r[0] != CONCURRENT_NIGHT] == [r for r in before if r[0] != CONCURRENT_NIGHT]
    for name in (PURCHASE, ENGAGEMENT):
        (run,) = runs_rows(spark, cfg, name, CONCURRENT_NIGHT)
        rows = membership_slice(after, name, CONCURRENT_NIGHT)
        assert run.status in ("ok", "precision_unreachable"), run.reason
        assert len(rows) == run.eligible_count > 0
        assert len({r[2] for r in rows}) == len(rows)  # one row per user
    thresholds = tables.read_output(spark, cfg, tables.SEGMENT_THRESHOLDS)
    assert {r.segment for r in thresholds.where(f"run_date = DATE'{CONCURRENT_NIGHT}'").collect()} == {
        PURCHASE, ENGAGEMENT}
    # Logs and summaries never print user-level rows: no user id of tonight's membership appears in them.
    printed = "".join(out + err for out, err in outputs.values())
    assert not {r[2] for r in after if r[0] == CONCURRENT_NIGHT} & set(re.findall(r"u\d{6}", printed))
    retried = sum(err.count("concurrent Delta commit") for _, err in outputs.values())
    print(f"concurrent writers: {retried} Delta conflict(s) retried")


def model_versions(cfg: AppConfig, segment: str) -> list[str]:
    import mlflow

    from segments_lib.store.tracking import configure_mlflow, registered_model_name

    configure_mlflow(cfg.mlflow)
    found = mlflow.MlflowClient().search_model_versions(f"name = '{registered_model_name(cfg.mlflow, segment)}'")
    return sorted(v.version for v in found)


@pytest.mark.slow
def test_sigkill_after_training_before_scoring_then_rerun_registers_nothing_twice(
        spark, workspace: Workspace) -> None:
    cfg = workspace.cfg
    versions_before = model_versions(cfg, PURCHASE)
    job = start_job(workspace.overlay, RETRAIN_NIGHT, "--segments", PURCHASE, "--retrain", "auto")
    # Logged once training returned: its MLflow run is finished and its model version registered.
    seen = kill_when_logged(job, f"✔ [{PURCHASE} {RETRAIN_NIGHT}] train")
    assert not any("write membership" in line for line in seen)
    versions_after_kill = model_versions(cfg, PURCHASE)
    assert len(versions_after_kill) == len(versions_before) + 1

    assert run_job(cfg, [RETRAIN_NIGHT], PURCHASE, "auto") == 0
    assert model_versions(cfg, PURCHASE) == versions_after_kill  # the killed night's run was reused
    (run,) = runs_rows(spark, cfg, PURCHASE, RETRAIN_NIGHT)
    assert run.status in ("ok", "precision_unreachable"), run.reason
    members = tables.read_output(spark, cfg, tables.SEGMENT_MEMBERSHIP).where(
        f"segment = '{PURCHASE}' AND run_date = DATE'{RETRAIN_NIGHT}'")
    assert members.count() == members.select("user_id").distinct().count() == run.eligible_count > 0


@pytest.mark.slow
def test_sigkill_after_registration_before_the_run_ends_then_rerun_leaves_one_version_for_the_night(
        spark, workspace: Workspace) -> None:
    import mlflow

    from segments_lib.store.tracking import CHAMPION, configure_mlflow, registered_model_name

    cfg = workspace.cfg
    name = registered_model_name(cfg.mlflow, PURCHASE)
    versions_before = model_versions(cfg, PURCHASE)
    job = start_job(workspace.overlay, RETRAIN_NIGHT, "--segments", PURCHASE, "--retrain", "auto")
    # The champion/challenger decision is logged after the version was registered, tagged and aliased,
    # and before the MLflow run ends: the window in which a rerun used to register a second version.
    seen = kill_when_logged(job, f"{name} v")
    assert any(f"▶ [{PURCHASE}] champion/challenger" in line for line in seen)
    after_kill = model_versions(cfg, PURCHASE)
    (orphan,) = set(after_kill) - set(versions_before)

    configure_mlflow(cfg.mlflow)
    client = mlflow.MlflowClient()
    killed_run = client.get_model_version(name, orphan).run_id
    assert client.get_run(killed_run).info.status == "RUNNING"  # the kill left it open

    assert run_job(cfg, [RETRAIN_NIGHT], PURCHASE, "auto") == 0
    versions = model_versions(cfg, PURCHASE)
    night_versions = [v for v in client.search_model_versions(f"name = '{name}'")
                      if v.tags.get("run_date") == RETRAIN_NIGHT.isoformat()]
    assert len(night_versions) == 1 and len(versions) == len(versions_before) + 1  # one version for the night
    # The registry may hand the freed number out again: what counts is whose model it holds now.
    assert night_versions[0].run_id != killed_run
    assert client.get_run(killed_run).info.status == "KILLED"
    assert client.get_run(killed_run).data.tags["retired"].startswith("never finished")
    champion = client.get_model_version_by_alias(name, CHAMPION).version
    assert champion in versions
    (run,) = runs_rows(spark, cfg, PURCHASE, RETRAIN_NIGHT)
    assert int(run.model_version) in {int(v) for v in versions}


@pytest.mark.slow
def test_no_eligible_user_at_the_snapshot_ends_with_a_status_not_a_crash(spark, workspace: Workspace) -> None:
    quiet_night = EVENTS_END + timedelta(days=30)  # nobody active in the 14 days before it
    code = run_job(workspace.cfg, [quiet_night], PURCHASE, "never")
    (run,) = runs_rows(spark, workspace.cfg, PURCHASE, quiet_night)
    assert (code, run.eligible_count, run.member_count) == (0, 0, 0), run.reason
    assert run.status == "no_eligible_users"
    assert "no user is in the eligible population" in run.reason and "active_in 14d" in run.reason
    members = tables.read_output(spark, workspace.cfg, tables.SEGMENT_MEMBERSHIP)
    assert members.where(f"run_date = DATE'{quiet_night}'").count() == 0


@pytest.mark.slow
def test_sigkill_during_the_backtest_then_rerun_duplicates_nothing(spark, workspace: Workspace) -> None:
    # RETRAIN_NIGHT's backtest judges FIRST_NIGHT's membership (prediction window 7d has closed).
    cfg = workspace.cfg
    versions_before = model_versions(cfg, PURCHASE)
    job = start_job(workspace.overlay, RETRAIN_NIGHT, "--segments", PURCHASE, "--retrain", "never")
    kill_when_logged(job, f"▶ [{PURCHASE} {RETRAIN_NIGHT}] backtest")

    assert run_job(cfg, [RETRAIN_NIGHT], PURCHASE, "never") == 0
    assert model_versions(cfg, PURCHASE) == versions_before
    assert len(runs_rows(spark, cfg, PURCHASE, RETRAIN_NIGHT)) == 1
    ledger = tables.read_output(spark, cfg, tables.SEGMENT_BACKTEST).where(
        f"segment = '{PURCHASE}' AND scored_date = DATE'{FIRST_NIGHT}'")
    levels = [r.level for r in ledger.collect()]
    assert levels and len(levels) == len(set(levels))  # one ledger row per level, not two


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # released on close: nothing listens there


def test_unreachable_tracking_store_fails_fast_without_writing_membership(tmp_path: Path, caplog, capsys) -> None:
    uri = f"http://analyst:s3cr3t-pw@127.0.0.1:{closed_port()}"
    cfg = load_config(None, overrides={"workspace": str(tmp_path / "ws"), "mlflow": {"tracking_uri": uri},
                                       "spark": {"master": "local[1]", "conf": TEST_SPARK_CONF}})
    started = time.monotonic()
    with caplog.at_level("INFO"):
        code = run_job(cfg, [FIRST_NIGHT], None, "auto")
    elapsed = time.monotonic() - started
    assert code == 2
    assert elapsed < 30, f"took {elapsed:.0f}s to give up on the tracking store"
    assert "MLflow tracking store is unreachable at http://analyst:***@127.0.0.1" in caplog.text
    assert "no membership was written" in caplog.text
    assert "s3cr3t-pw" not in caplog.text + "".join(capsys.readouterr())
    assert not cfg.output.root.path.exists()


STORE_DOWN_NIGHT = RETRAIN_NIGHT  # its retraining is due, and its backtest judges FIRST_NIGHT's membership


def copy_policy_overlay(workspace: Workspace, tracking_uri: str) -> dict:
    base = overlay_for(workspace.cfg.workspace.path, Path(workspace.cfg.segments_file))
    return {**base, "mlflow": {"tracking_uri": tracking_uri, "on_unreachable": "score_with_last_champion"}}


def membership_of(spark, cfg: AppConfig, run_date: date) -> list[tuple]:
    return [r for r in table_rows(spark, cfg, tables.SEGMENT_MEMBERSHIP) if r[0] == run_date]


@pytest.mark.slow
def test_tracking_server_stopped_mid_job_then_the_next_night_scores_from_the_champion_copy(
        spark, workspace: Workspace, tmp_path: Path) -> None:
    import mlflow

    from segments_lib.job.scoring import MEMBERSHIP_COLUMNS
    from segments_lib.store import champion_copy
    from segments_lib.store.tracking import CHAMPION, registered_model_name
    from tests.support.mlflow_server import start_mlflow_server

    cfg = workspace.cfg
    # A real server in front of the workspace's store, which holds FIRST_NIGHT's champions.
    server = start_mlflow_server(tmp_path / "server", backend_db=cfg.workspace.path / "mlflow" / "mlflow.db")
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump(copy_policy_overlay(workspace, server.uri)))
    served_night = STORE_DOWN_NIGHT - timedelta(days=1)
    stderr_log = tmp_path / "job.stderr"
    try:
        with stderr_log.open("w") as stderr:
            job = subprocess.Popen(
                [sys.executable, "-m", "jobs.nightly", "--conf", str(overlay), "--from", served_night.isoformat(),
                 "--to", STORE_DOWN_NIGHT.isoformat()],
                cwd=PROJECT_ROOT, env=job_env(), stdout=subprocess.PIPE, stderr=stderr, text=True,
                start_new_session=True)
            printed = []
            for line in job.stdout:  # the first night's summary: the store goes away before the second night
                printed.append(line)
                if line.startswith(f"Night {served_night}"):
                    server.stop()
            printed.append(job.stdout.read())
            job.wait(timeout=SUBPROCESS_TIMEOUT_S)
    finally:
        server.stop()
    log = stderr_log.read_text()
    assert job.returncode == 0, "".join(printed) + log[-4000:]
    assert any(line.startswith(f"Night {served_night}") for line in printed)
    assert "scoring from the champion copy" in log

    runs = tables.read_output(spark, cfg, tables.SEGMENT_RUNS)
    membership_down = membership_of(spark, cfg, STORE_DOWN_NIGHT)
    configure_cfg = load_config(None, overrides=overlay_for(cfg.workspace.path, Path(cfg.segments_file)))
    from segments_lib.store.tracking import configure_mlflow

    configure_mlflow(configure_cfg.mlflow)  # the server's own store, read directly now that the server is down
    client = mlflow.MlflowClient()
    for segment in (PURCHASE, ENGAGEMENT):
        (served,) = runs.where(f"segment = '{segment}' AND run_date = DATE'{served_night}'").collect()
        (down,) = runs.where(f"segment = '{segment}' AND run_date = DATE'{STORE_DOWN_NIGHT}'").collect()
        champion = client.get_model_version_by_alias(registered_model_name(cfg.mlflow, segment), CHAMPION)
        assert (served.model_source, down.model_source) == ("registry", "champion_copy")
        assert down.status in ("ok", "precision_unreachable") and not down.retrained, down.reason
        assert (down.model_version, down.mlflow_run_id) == (int(champion.version), champion.run_id)
        assert (down.model_version, down.mlflow_run_id) == (served.model_version, served.mlflow_run_id)
        assert f"scored from the champion copy segments_{segment} v{champion.version}" in down.reason
        assert "MLflow tracking store unreachable at http://127.0.0.1:" in down.reason
        assert "training was due (champion is 7 days old (retrain_every 7d))" in down.reason
        rows = [r for r in membership_down if r[1] == segment]
        assert len(rows) == len({r[2] for r in rows}) == down.eligible_count > 0
        names = [name for name, _, _ in MEMBERSHIP_COLUMNS]
        model_of = [names.index(c) for c in ("model_name", "model_version", "mlflow_run_id")]
        assert {tuple(r[i] for i in model_of) for r in rows} == {(f"segments_{segment}", int(champion.version),
                                                                  champion.run_id)}
        assert champion_copy.current_version(spark, cfg, segment) == str(champion.version)
    # The closed night (FIRST_NIGHT, 7d window) was judged with the promises the copy kept.
    ledger = tables.read_output(spark, cfg, tables.SEGMENT_BACKTEST).where(f"scored_date = DATE'{FIRST_NIGHT}'")
    assert {r.segment for r in ledger.collect()} == {PURCHASE, ENGAGEMENT}

    # The oracle: the same night scored through the registry gives exactly the same membership rows.
    assert run_job(configure_cfg, [STORE_DOWN_NIGHT], None, "never") == 0
    assert membership_of(spark, cfg, STORE_DOWN_NIGHT) == membership_down
    rerun = tables.read_output(spark, cfg, tables.SEGMENT_RUNS).where(f"run_date = DATE'{STORE_DOWN_NIGHT}'")
    assert {r.model_source for r in rerun.collect()} == {"registry"}


def test_store_down_without_a_champion_copy_writes_no_membership_and_says_why(
        spark, workspace: Workspace, monkeypatch: pytest.MonkeyPatch, restore_tracking_uri: None) -> None:
    for variable, value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                            ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")):
        monkeypatch.setenv(variable, value)  # what the job sets; restored for the tests after this one
    cfg = load_config(None, overrides=copy_policy_overlay(workspace, f"http://127.0.0.1:{closed_port()}"))
    before = table_rows(spark, cfg, tables.SEGMENT_MEMBERSHIP)
    # FIRST_NIGHT ran with on_unreachable: fail, so no copy was kept: nothing may score tonight.
    assert run_job(cfg, [KILL_NIGHT], None, "auto") == 1
    assert table_rows(spark, cfg, tables.SEGMENT_MEMBERSHIP) == before
    for segment in (PURCHASE, ENGAGEMENT):
        (run,) = runs_rows(spark, cfg, segment, KILL_NIGHT)
        assert (run.status, run.model_version, run.model_source) == ("failed", None, None)
        assert "MLflow tracking store unreachable at http://127.0.0.1:" in run.reason
        assert f"segment {segment} has no champion copy at " in run.reason
        assert run.reason.endswith("no membership was written")
