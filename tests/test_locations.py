"""Locations: a URI keeps its scheme, a local path stays a path, and nothing escapes a root."""

from __future__ import annotations

from pathlib import Path

import pytest

from segments_lib.config import ConfigError, load_config
from segments_lib.locations import Location, LocationError
from tests.conftest import make_config


@pytest.mark.parametrize(("value", "expected"), [
    ("s3a://lake/ws/", "s3a://lake/ws"),
    ("S3A://lake//ws/./x", "s3a://lake/ws/x"),
    ("abfss://data@acct.dfs.core.windows.net/lake", "abfss://data@acct.dfs.core.windows.net/lake"),
    ("gs://bucket", "gs://bucket"),
    ("hdfs://namenode:8020/user/segments", "hdfs://namenode:8020/user/segments"),
    ("file:///tmp/lake/events", "/tmp/lake/events"),
    ("/tmp/lake/../lake/events", "/tmp/lake/events"),
])
def test_a_uri_keeps_its_scheme_and_a_local_path_is_absolute(value: str, expected: str) -> None:
    assert str(Location.parse(value)) == expected


def test_relative_paths_anchor_at_the_base_and_uris_ignore_it() -> None:
    base = Location.parse("s3a://lake/ws")
    assert str(Location.parse("tables", base)) == "s3a://lake/ws/tables"
    assert str(Location.parse("/srv/events", base)) == "/srv/events"
    assert str(Location.parse("gs://other/x", base)) == "gs://other/x"
    assert str(Location.parse("tables", Location.parse("/srv/ws"))) == "/srv/ws/tables"


def test_joining_and_parents_stay_inside_the_uri() -> None:
    root = Location.parse("s3a://lake/ws/tables")
    assert str(root / "segment_membership") == "s3a://lake/ws/tables/segment_membership"
    assert str(root.parent) == "s3a://lake/ws"
    assert str(Location.parse("s3a://lake/ws").parent) == "s3a://lake/"
    assert root.name == "tables"
    assert root.scheme == "s3a" and not root.is_local


@pytest.mark.parametrize("name", ["../x", "a/../../x", "..", "."])
def test_a_root_contains_only_what_lies_strictly_below_it(name: str) -> None:
    root = Location.parse("s3a://lake/ws/tables")
    assert not root.contains(root / name)


def test_containment_compares_bucket_and_whole_path_segments() -> None:
    root = Location.parse("s3a://lake/ws/tables")
    assert root.contains(Location.parse("s3a://lake/ws/tables/segment_runs"))
    assert not root.contains(Location.parse("s3a://lake/ws/tables-old/x"))  # a prefix is not a parent
    assert not root.contains(Location.parse("s3a://other/ws/tables/x"))
    assert not root.contains(Location.parse("/ws/tables/x"))


def test_a_remote_location_refuses_to_be_a_local_path() -> None:
    remote = Location.parse("s3a://lake/events")
    with pytest.raises(LocationError, match="s3a://lake/events is not on the local disk"):
        _ = remote.path
    with pytest.raises(LocationError):
        Path(remote)  # os.fspath: never the old silent 's3a:/lake/events'


def test_the_uris_other_clients_understand() -> None:
    assert Location.parse("s3a://lake/mlflow/x").for_mlflow() == "s3://lake/mlflow/x"
    assert Location.parse("s3a://lake/t").for_arrow() == "s3://lake/t"
    assert Location.parse("abfss://c@a.dfs.core.windows.net/t").for_arrow() == "abfss://c@a.dfs.core.windows.net/t"
    assert Location.parse("/tmp/mlflow").for_mlflow() == "file:///tmp/mlflow"


def test_config_locations_are_uris_when_configured_so(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, events={"path": "s3a://lake/events"}, output={"root": "s3a://lake/tables"},
                      quarantine_path="s3a://lake/quarantine", mlflow={"artifact_location": "s3a://lake/mlflow"})
    assert str(cfg.events.path) == "s3a://lake/events"
    assert str(cfg.table_path("segment_membership")) == "s3a://lake/tables/segment_membership"
    assert str(cfg.quarantine_path) == "s3a://lake/quarantine"
    assert cfg.mlflow.artifact_location.for_mlflow() == "s3://lake/mlflow"
    assert cfg.workspace.path == tmp_path  # the rest stays local


def test_a_remote_workspace_needs_a_tracking_store_that_is_not_a_local_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ConfigError, match=r"embedded MLflow store .* set 'mlflow.tracking_uri'"):
        load_config(None, overrides={"workspace": "s3a://lake/ws"})


def test_a_uri_without_a_bucket_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'output\.root': s3a://: a URI needs a bucket"):
        make_config(tmp_path, output={"root": "s3a://"})
