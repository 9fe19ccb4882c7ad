"""One Spark session for the whole test run; tiny DataFrames; small shuffles."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import DataFrame

from segments_lib.config import AppConfig, load_config
from segments_lib.store.sources import POSTGRES_DRIVER

os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)

# A pytest-xdist worker runs under execnet, whose __main__ has neither __spec__ nor __file__. On import
# (mlflow.spark imports it) pyspark.sql.connect takes that for a doctest run without Spark Connect's
# dependencies and calls sys.exit(0), which failed every test that logs a model. A name makes the worker's
# __main__ look like any script's, so the import checks the dependencies and raises ImportError as usual.
_main = sys.modules["__main__"]
if getattr(_main, "__spec__", None) is None and not hasattr(_main, "__file__"):
    _main.__file__ = "pytest-xdist-worker"

TEST_SPARK_CONF = {
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.sql.adaptive.enabled": "false",
    "spark.ui.enabled": "false",
    "spark.driver.memory": "3g",
    "spark.sql.session.timeZone": "UTC",
    "spark.databricks.delta.snapshotPartitions": "2",  # as conf/local.yaml: small logs, 2 cores
}


# The shared session's own packages: the PostgreSQL JDBC driver joins Delta's JARs (resolved once and
# cached under its own manifest), because tests/test_sources.py runs a JDBC night in this session, far
# cheaper than a subprocess night with its own JVM, session and resolution.
SESSION_SPARK = {"extra_packages": [POSTGRES_DRIVER]}


def make_config(workspace: Path, **overrides: object) -> AppConfig:
    """The project's real config, with the workspace moved into a temporary folder."""
    # An explicit store per workspace: mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI into the
    # process environment, which would otherwise point every later config at an earlier test's store.
    merged = {
        "workspace": str(workspace),
        "spark": {"master": "local[2]", "conf": TEST_SPARK_CONF},
        "mlflow": {"tracking_uri": f"sqlite:///{(workspace / 'mlflow' / 'mlflow.db').as_posix()}"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return load_config(None, overrides=merged)


_SESSION_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


@pytest.fixture(autouse=True)
def _reset_tracking_uri_env():
    """After every test, MLFLOW_TRACKING_URI is what the session started with.

    mlflow.set_tracking_uri exports the URI into os.environ; left there, a later test's subprocess job
    would inherit an earlier test's store (a stopped server, say) instead of its own workspace's.
    """
    yield
    if _SESSION_TRACKING_URI is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = _SESSION_TRACKING_URI


@pytest.fixture(scope="session")
def session_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="session")
def spark(session_workspace: Path):
    from segments_lib.store.session import build_session

    cfg = make_config(session_workspace, spark=SESSION_SPARK)
    session = build_session(cfg.spark, app_name="segments-tests")
    yield session
    session.stop()


@pytest.fixture()
def app_config(tmp_path: Path) -> AppConfig:
    return make_config(tmp_path / "ws")


@pytest.fixture()
def restore_tracking_uri():
    """Tests that point MLflow at another store put the previous URIs back afterwards."""
    import mlflow

    before = mlflow.get_tracking_uri()
    yield
    mlflow.set_tracking_uri(before)
    mlflow.set_registry_uri(before)


# --- shared data and servers, built once per test session -------------------------------------------

DEMO_END = date(2026, 6, 1)
# A week before, the night before, and the night itself: a backfill that trains once (retrain_every 30d),
# judges the first night's membership on the last (P3 = 7d), and measures night-to-night churn.
TRAINED_NIGHTS = (date(2026, 5, 25), date(2026, 5, 31), DEMO_END)


@pytest.fixture(scope="session")
def demo_events(spark) -> DataFrame:
    """~1.5k demo users over 70 days ending 2026-06-01 (seed 11), generated once and cached in Spark."""
    from segments_lib.intake.demo import generate_events

    table = generate_events(users=1500, days=70, end_date=DEMO_END, seed=11)
    return spark.createDataFrame(table.to_pandas()).cache()


def write_events(events: DataFrame, cfg: AppConfig) -> None:
    events.write.format("delta").mode("overwrite").partitionBy("event_date").save(str(cfg.events.path))


def write_generated_events(spark, cfg: AppConfig, users: int, days: int, end_date: date = DEMO_END,
                           seed: int = 11) -> None:
    """Demo events of another size than the session's `demo_events`, written to `cfg`'s events table."""
    from segments_lib.intake.demo import generate_events

    table = generate_events(users=users, days=days, end_date=end_date, seed=seed)
    write_events(spark.createDataFrame(table.to_pandas()), cfg)


@pytest.fixture(scope="session")
def trained_workspace(spark, demo_events: DataFrame, tmp_path_factory: pytest.TempPathFactory) -> AppConfig:
    """The session's one trained workspace: two small segments backfilled over `TRAINED_NIGHTS`.

    Tests read it; a test that changes it wraps the change in
    `tests.support.workspaces.restored_afterwards`, so no test depends on another's order.
    """
    from segments_lib.job.runner import run_job
    from tests.support.segments import two_small_segments

    root = tmp_path_factory.mktemp("trained")
    segments_file = root / "segments.yaml"
    segments_file.write_text(two_small_segments(retrain_every="30d"))
    cfg = make_config(root / "ws", segments_file=str(segments_file))
    write_events(demo_events, cfg)
    assert run_job(cfg, list(TRAINED_NIGHTS), None, "auto") == 0
    return cfg


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real MLflow tracking server on loopback for the session (SQLite store, proxied artifacts)."""
    from tests.support.mlflow_server import mlflow_server

    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as uri:
        yield uri


# --- how pytest-xdist shares out the modules -------------------------------------------------------------

# The modules that read the session's trained workspace mark themselves with this group (pytestmark).
SHARED_WORKSPACE_GROUP = pytest.mark.xdist_group("trained_workspace")


def pytest_itemcollected(item: pytest.Item) -> None:
    """Every test module is its own xdist group unless it names one (the trained-workspace modules do).

    `make test` runs `--dist loadgroup`: a group goes to one worker whole, so a module's fixtures are still
    built once (as with `--dist loadfile`), and the session's trained workspace, the suite's costliest
    fixture (a three-night backfill), is built by one worker instead of by each worker that draws one of
    its modules. Marked here, at collection, because xdist reads the marks in its own
    `pytest_collection_modifyitems`, which runs before a conftest's.
    """
    if item.get_closest_marker("xdist_group") is None:
        if "trained_workspace" in getattr(item, "fixturenames", ()):
            raise pytest.UsageError(f"{item.nodeid} uses trained_workspace: mark its module "
                                    "`pytestmark = SHARED_WORKSPACE_GROUP` (tests/conftest.py)")
        item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
