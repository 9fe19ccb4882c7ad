"""One home for every default: conf/base.yaml defines every key, the parser has no fallbacks of its own,
and docs/config-reference.md is generated from base.yaml and kept current."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from dataclasses import MISSING, fields, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from segments_lib import config
from segments_lib.config import (
    OPEN_SECTIONS,
    AppConfig,
    ConfigError,
    CsvOptions,
    DemoConfig,
    EventColumns,
    EventsConfig,
    JdbcConfig,
    MlflowConfig,
    NightlyConfig,
    OutputConfig,
    SparkConfig,
    load_config,
    parse_config,
    render_reference,
    shipped_base,
)
from segments_lib.intake.events import ValidationRules

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REFERENCE = PROJECT_ROOT / "docs" / "config-reference.md"
BASE = PROJECT_ROOT / "conf" / "base.yaml"


def key_paths(node: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for key, value in node.items():
        path = (*prefix, str(key))
        paths.append(path)
        if isinstance(value, dict):
            paths.extend(key_paths(value, path))
    return paths


def test_reference_page_is_current() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == render_reference(), (
        "docs/config-reference.md is stale: python -m segments_lib.config --reference > docs/config-reference.md")


def test_the_generator_command_prints_the_page() -> None:
    result = subprocess.run([sys.executable, "-m", "segments_lib.config", "--reference"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout == REFERENCE.read_text(encoding="utf-8")


def test_every_key_of_base_yaml_is_on_the_page_with_its_default_and_a_comment() -> None:
    page = REFERENCE.read_text(encoding="utf-8")
    base = yaml.safe_load(BASE.read_text(encoding="utf-8"))
    comments = config.base_comments(BASE.read_text(encoding="utf-8"))
    paths = key_paths(base)
    assert len(paths) > 40
    for path in paths:
        dotted = ".".join(path)
        if len(path) == 1:
            assert f"## `{dotted}`" in page, dotted
        else:
            assert f"| `{dotted}` |" in page, dotted
        assert comments.get(path), f"{dotted} has no comment in conf/base.yaml"
    # a few rows by hand: key, default as YAML, the comment written next to it
    assert "| `demo.users` | `6000` | demo users generated |" in page
    assert "| `spark.master` | `null` | null: local[*], unless spark-submit already set one" in page
    assert "| `events.format` | `delta` | delta \\| parquet \\| csv \\| json \\| table \\| jdbc |" in page
    assert "| `events.source_timezone` | `null` | Zone of zone-less times" in page
    assert "Default: `conf/segments.yaml`." in page


def test_a_comment_block_belongs_to_the_key_below_it_unless_a_blank_line_follows() -> None:
    text = ("# file intro\n\n# about a\na: 1  # beside a\nb:\n  # about c\n  c: [x, y]\n  d: null # d\n"
            "e:\n  f.g: '8'\n")
    assert config.base_comments(text) == {
        ("a",): "about a beside a", ("b",): "", ("b", "c"): "about c", ("b", "d"): "d",
        ("e",): "", ("e", "f.g"): "",
    }


SECTIONS = {
    (): (AppConfig, {"sources"}),
    ("events",): (EventsConfig, set()),
    ("events", "columns"): (EventColumns, set()),
    ("events", "csv"): (CsvOptions, set()),
    ("events", "jdbc"): (JdbcConfig, set()),
    ("output",): (OutputConfig, set()),
    ("mlflow",): (MlflowConfig, set()),
    ("spark",): (SparkConfig, set()),
    ("nightly",): (NightlyConfig, set()),
    ("demo",): (DemoConfig, set()),
}


@pytest.mark.parametrize("path", list(SECTIONS), ids=lambda p: ".".join(p) or "top")
def test_base_yaml_defines_exactly_the_fields_of_each_section(path: tuple[str, ...]) -> None:
    node = shipped_base()
    for key in path:
        node = node[key]
    cls, not_config = SECTIONS[path]
    assert set(node) == {f.name for f in fields(cls)} - not_config


def test_the_config_classes_have_no_defaults_of_their_own() -> None:
    for cls, _ in SECTIONS.values():
        if cls is EventColumns:
            continue
        with_defaults = [f.name for f in fields(cls) if f.default is not MISSING or f.default_factory is not MISSING]
        assert with_defaults == [], cls.__name__
    # EventColumns' defaults are the contract's own names, for code that builds one by hand: the same
    # mapping base.yaml states.
    assert EventColumns(**shipped_base()["events"]["columns"]) == EventColumns()


def test_validation_rules_built_by_hand_match_the_shipped_events_section() -> None:
    # ValidationRules() serves library callers and tests; the job builds it from config. Both must agree.
    shipped = shipped_base()["events"]
    assert ValidationRules() == ValidationRules(dedup_key=tuple(shipped["dedup_key"]),
                                                allow_negative_values=shipped["allow_negative_values"],
                                                max_rejected_share=shipped["max_rejected_share"])


def test_open_sections_are_mappings_in_base_yaml() -> None:
    base = shipped_base()
    for dotted in OPEN_SECTIONS:
        node = base
        for key in dotted.split("."):
            node = node[key]
        assert isinstance(node, dict) and node, dotted


def test_demo_defaults_come_from_base_yaml() -> None:
    cfg = load_config(None)
    assert (cfg.demo.users, cfg.demo.days, cfg.demo.seed, cfg.demo.end_date) == (6000, 100, 7, "2026-06-01")


def test_a_key_missing_from_the_merged_yaml_is_an_error_not_a_silent_default() -> None:
    data = shipped_base()
    del data["nightly"]["confidence"]
    with pytest.raises(ConfigError, match=r"^base\.yaml: missing required key 'nightly\.confidence'"):
        parse_config(data, "base.yaml")


def _overlay(tmp_path: Path, text: str) -> Path:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(text)
    return overlay


@pytest.mark.parametrize(("text", "message"), [
    ("output:\n  catalog_database: null\nnightly:\n  confidence: null\n",
     r"'nightly\.confidence' must be float, found null"),
    ("nightly:\n  min_segment_size: 1.5\n", r"'nightly\.min_segment_size' must be int, found 1\.5"),
    ("events:\n  allow_negative_values: 'no'\n",
     r"'events\.allow_negative_values' must be true or false, found 'no'"),
])
def test_null_and_type_errors_name_the_key_and_keep_their_messages(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_overlay(tmp_path, text))


def test_null_only_where_base_yaml_has_null(tmp_path: Path) -> None:
    overlay = _overlay(tmp_path, "output:\n  catalog_database: null\nspark:\n  master: null\n")
    cfg = load_config(overlay)
    assert cfg.output.catalog_database is None and cfg.spark.master is None


def test_an_empty_section_in_an_overlay_changes_nothing(tmp_path: Path) -> None:
    overlay = tmp_path / "empty.yaml"
    overlay.write_text("spark:\n  # master: local[1]\nnightly:\n")
    assert replace(load_config(overlay), sources=()) == replace(load_config(None), sources=())


def test_an_integer_is_accepted_where_a_float_is_expected(tmp_path: Path) -> None:
    assert load_config(_overlay(tmp_path, "nightly:\n  confidence: 1\n")).nightly.confidence == 1.0


def test_unknown_keys_name_the_layer_that_has_them(tmp_path: Path) -> None:
    overlay = tmp_path / "deep.yaml"
    overlay.write_text("events:\n  columns:\n    user_column: uid\n")
    with pytest.raises(ConfigError) as caught:
        load_config(overlay)
    assert str(caught.value) == (
        f"{overlay}: unknown key 'events.columns.user_column' (did you mean 'user_col'?); "
        "valid keys: event_col, time_col, user_col, value_col")
    with pytest.raises(ConfigError, match=r"^overrides: unknown key 'nightly\.paralel_segments' "
                                          r"\(did you mean 'parallel_segments'\?\)"):
        load_config(None, overrides={"nightly": {"paralel_segments": 3}})
    # free sections accept any key
    overlay.write_text("spark:\n  conf:\n    spark.anything.at.all: '1'\nprecision_levels:\n  top: 0.95\n")
    cfg = load_config(overlay)
    assert cfg.spark.conf["spark.anything.at.all"] == "1" and next(iter(cfg.precision_levels)) == "top"


# --- where the files are found: the shipped conf (segments_lib.conf), overlays, segments_file -----------

SHIPPED_CONF = PROJECT_ROOT / "conf"


def test_the_shipped_conf_is_the_checkouts_conf_folder_in_an_editable_install() -> None:
    assert Path(str(config.shipped_conf())) == SHIPPED_CONF
    assert load_config(None).sources == (SHIPPED_CONF / "base.yaml",)


def test_a_bare_overlay_name_is_the_current_directorys_conf_first_then_the_shipped_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config("local")
    assert cfg.sources[1] == SHIPPED_CONF / "local.yaml" and cfg.spark.master == "local[2]"
    assert load_config("local.yaml").sources[1] == SHIPPED_CONF / "local.yaml"
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "local.yaml").write_text("spark:\n  master: local[3]\n")
    cfg = load_config("local")
    assert cfg.sources[1] == tmp_path / "conf" / "local.yaml" and cfg.spark.master == "local[3]"
    assert cfg.sources[0] == SHIPPED_CONF / "base.yaml"  # base.yaml is always the shipped one


def test_an_overlay_path_is_relative_to_the_current_directory_and_wins_over_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cluster.yaml").write_text("spark:\n  master: local[1]\n")  # as spark-submit --files ships it
    assert load_config("cluster.yaml").spark.master == "local[1]"
    assert load_config("cluster").sources[1] == SHIPPED_CONF / "cluster.yaml"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mine.yaml").write_text("nightly:\n  parallel_segments: 1\n")
    assert load_config("sub/mine.yaml").nightly.parallel_segments == 1
    with pytest.raises(ConfigError, match=r"sub/nope\.yaml: config file not found"):
        load_config("sub/nope.yaml")


def test_an_unknown_overlay_name_lists_the_shipped_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config("locl")
    assert str(caught.value) == (
        f"locl: config overlay not found: not a file, and neither {tmp_path / 'conf' / 'locl.yaml'} nor a "
        "shipped conf/locl.yaml exists (shipped overlays: cluster, local)")


def test_segments_file_is_relative_to_the_current_directory_then_the_shipped_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(None).segments_file.path == SHIPPED_CONF / "segments.yaml"
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "segments.yaml").write_text("segments: []\n")
    assert load_config(None).segments_file.path == tmp_path / "conf" / "segments.yaml"
    # --segments-file (both jobs) and segments_file in an overlay: relative to the current directory
    assert load_config(None, overrides=config.segments_file_override("mine.yaml")).segments_file.path == (
        tmp_path / "mine.yaml")
    assert load_config(None, overrides=config.segments_file_override("/abs/s.yaml")).segments_file.path == (
        Path("/abs/s.yaml"))
    # a URI stays a URI (it was once collapsed into <cwd>/s3a:/lake/...)
    assert str(load_config(None, overrides=config.segments_file_override("s3a://lake/conf/s.yaml")).segments_file) == (
        "s3a://lake/conf/s.yaml")
    assert config.segments_file_override(None) is None


def test_workspace_resolves_against_the_project_folder_of_a_checkout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGMENTS_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert config.source_checkout() == PROJECT_ROOT
    assert load_config(None).workspace.path == PROJECT_ROOT / "workspace"


def test_both_jobs_take_segments_file_with_the_same_rules() -> None:
    from jobs import check_segments, nightly

    assert nightly.parse_args(["--segments-file", "mine.yaml"]).segments_file == "mine.yaml"
    for job in (nightly, check_segments):
        assert "segments_file_override(args.segments_file)" in Path(job.__file__).read_text(encoding="utf-8")


ZIP_PROBE = """
import json, sys
import segments_lib.config as c
from segments_lib.language.segment_config import load_segments
cfg = c.load_config("local")
segments = load_segments(cfg.segments_file, cfg.precision_levels)
print(json.dumps({"module": c.__file__, "sources": [str(p) for p in cfg.sources], "master": cfg.spark.master,
                  "workspace": str(cfg.workspace), "segments": [s.name for s in segments],
                  "segments_file": cfg.segments_file.name}))
"""


def test_make_package_ships_the_config_inside_the_zip(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = subprocess.run(["make", "-s", "package", f"DIST={dist}", f"PY={sys.executable}",
                            "-o", ".venv/.runtime-installed"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                           timeout=300)
    assert built.returncode == 0, built.stderr
    archive = dist / "segments_lib.zip"
    names = set(zipfile.ZipFile(archive).namelist())
    for name in ("base.yaml", "local.yaml", "cluster.yaml", "segments.yaml", "__init__.py"):
        assert f"segments_lib/conf/{name}" in names
    assert not [n for n in names if "__pycache__" in n]
    run_dir = tmp_path / "driver"
    run_dir.mkdir()  # no conf/ here: every file comes from the zip
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(archive), "HOME": str(tmp_path)}
    probe = subprocess.run([sys.executable, "-c", ZIP_PROBE], cwd=run_dir, env=env, capture_output=True, text=True,
                           timeout=120)
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert seen["module"] == f"{archive}/segments_lib/config.py"
    assert seen["sources"] == [f"{archive}/segments_lib/conf/base.yaml", f"{archive}/segments_lib/conf/local.yaml"]
    assert seen["master"] == "local[2]"
    assert seen["workspace"] == str(run_dir / "workspace")  # an installed copy has no project folder
    assert seen["segments_file"] == "segments.yaml" and len(seen["segments"]) == 5
