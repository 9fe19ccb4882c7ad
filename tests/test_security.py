"""Security: secrets stay out of config and logs, and no name can write outside the output location."""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from segments_lib.config import PROJECT_ROOT, ConfigError
from segments_lib.job.runner import run_job
from segments_lib.store import tables
from segments_lib.store.store_check import mask_uri
from tests.conftest import make_config

RUN_DATE = date(2026, 6, 1)
T = datetime(2026, 6, 1)
SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(("uri", "shown"), [
    (f"http://analyst:{SECRET}@mlflow.internal:5000/api", "http://analyst:***@mlflow.internal:5000/api"),
    (f"https://token:{SECRET}@host", "https://token:***@host"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("sqlite:////tmp/ws/mlflow/mlflow.db", "sqlite:////tmp/ws/mlflow/mlflow.db"),
    ("databricks", "databricks"),
])
def test_mask_uri_hides_only_the_password(uri: str, shown: str) -> None:
    assert mask_uri(uri) == shown


SECRET_WORDS = ("password", "secret", "token", "credential", "api_key")


def _keys(node: object, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        return [k for key, value in node.items() for k in (f"{prefix}{key}", *_keys(value, f"{prefix}{key}."))]
    return []


def _value(node: dict, key: str) -> object:
    for part in key.split("."):
        node = node[part]
    return node


def test_shipped_config_has_no_secret_keys_and_the_parser_rejects_them() -> None:
    for path in sorted((PROJECT_ROOT / "conf").glob("*.yaml")):
        config = yaml.safe_load(path.read_text()) or {}
        secret_like = [k for k in _keys(config) if any(w in k.lower() for w in SECRET_WORDS)]
        # `events.jdbc.password_env` names the environment variable that holds the password: allowed
        # only as such a name (or unset), never as a value that could be the secret itself.
        holds_a_value = [k for k in secret_like if not (k.endswith("_env") and (
            _value(config, k) is None or re.fullmatch(r"[A-Z_][A-Z0-9_]*", str(_value(config, k)))))]
        assert not holds_a_value, path
    with pytest.raises(ConfigError, match=r"unknown key 'mlflow\.password'"):
        make_config(Path("/tmp/unused"), mlflow={"password": SECRET})
    with pytest.raises(ConfigError, match=r"unknown key 'events\.jdbc\.password'"):
        make_config(Path("/tmp/unused"), events={"jdbc": {"password": SECRET}})


@pytest.mark.parametrize("name", ["../x", "../../etc/x", "a/../../x", "/tmp/elsewhere", "", "."])
def test_output_path_refuses_names_that_leave_the_output_location(app_config, name: str) -> None:
    with pytest.raises(tables.UnsafePathError, match="would write outside the output location"):
        tables.output_path(app_config, name)


def test_output_path_keeps_ordinary_names_inside_the_root(app_config) -> None:
    assert tables.output_path(app_config, "segment_membership").path == (
        app_config.output.root.path.resolve() / "segment_membership")


def test_write_output_with_an_escaping_name_writes_nothing(spark, app_config) -> None:
    frame = spark.createDataFrame([("x", RUN_DATE)], "segment string, run_date date")
    with pytest.raises(tables.UnsafePathError):
        tables.write_output(frame, app_config, "../escaped", {"segment": "x", "run_date": RUN_DATE})
    assert not (app_config.output.root.path.parent / "escaped").exists()


@pytest.mark.slow
def test_a_password_in_the_tracking_uri_is_never_printed(spark, tracking_server: str, tmp_path: Path, caplog, capsys,
                                                          restore_tracking_uri: None) -> None:
    segments_file = tmp_path / "segments.yaml"
    segments_file.write_text("segments:\n  - name: buyers\n    kind: conversion\n"
                             "    target: {occurs: {events: [Purchase Completed]}}\n"
                             "    past_window: 7d\n    prediction_window: 7d\n")
    rows = [("u1", "Open App", T - timedelta(days=3), None), ("u1", "Purchase Completed", T - timedelta(days=2), 9.0),
            ("u2", "Open App", T - timedelta(days=9), None)]
    uri = tracking_server
    authed = uri.replace("http://", f"http://analyst:{SECRET}@")
    cfg = make_config(tmp_path / "ws", segments_file=str(segments_file), mlflow={"tracking_uri": authed})
    (spark.createDataFrame(rows, "user_id string, event_name string, event_time timestamp, event_value double")
     .write.format("delta").save(str(cfg.events.path)))
    with caplog.at_level(logging.DEBUG):
        code = run_job(cfg, [RUN_DATE], None, "auto")
    out, err = capsys.readouterr()
    assert code == 0, caplog.text[-3000:]
    assert f"MLflow: {uri.replace('http://', 'http://analyst:***@')}" in out  # the summary names the store
    assert "skipped" in out  # three events cannot train: the night ends with a status, not a crash
    assert SECRET not in caplog.text + out + err
