"""One home for every default: conf/base.yaml defines every key, the parser has no fallbacks of its own,
and docs/config-reference.md is generated from base.yaml and kept current."""

from __future__ import annotations

import subprocess
import sys
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
    DemoConfig,
    EventColumns,
    EventsConfig,
    MlflowConfig,
    NightlyConfig,
    OutputConfig,
    SparkConfig,
    load_config,
    parse_config,
    render_reference,
    shipped_base,
)

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
    assert "| `demo.users` | `10000` | demo users generated |" in page
    assert "| `spark.master` | `null` | null: local[*], unless spark-submit already set one" in page
    assert "| `events.format` | `delta` | delta \\| parquet |" in page
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


def test_open_sections_are_mappings_in_base_yaml() -> None:
    base = shipped_base()
    for dotted in OPEN_SECTIONS:
        node = base
        for key in dotted.split("."):
            node = node[key]
        assert isinstance(node, dict) and node, dotted


def test_demo_defaults_come_from_base_yaml() -> None:
    cfg = load_config(None)
    assert (cfg.demo.users, cfg.demo.days, cfg.demo.seed, cfg.demo.end_date) == (10000, 100, 7, "2026-06-01")


def test_a_key_missing_from_the_merged_yaml_is_an_error_not_a_silent_default() -> None:
    data = shipped_base()
    del data["nightly"]["confidence"]
    with pytest.raises(ConfigError, match=r"^base\.yaml: missing required key 'nightly\.confidence'"):
        parse_config(data, "base.yaml")


def test_null_only_where_base_yaml_has_null(tmp_path: Path) -> None:
    overlay = tmp_path / "nulls.yaml"
    overlay.write_text("output:\n  catalog_database: null\nnightly:\n  confidence: null\n")
    with pytest.raises(ConfigError, match=r"'nightly\.confidence' must be float, found null"):
        load_config(overlay)
    overlay.write_text("output:\n  catalog_database: null\nspark:\n  master: null\n")
    cfg = load_config(overlay)
    assert cfg.output.catalog_database is None and cfg.spark.master is None


def test_an_empty_section_in_an_overlay_changes_nothing(tmp_path: Path) -> None:
    overlay = tmp_path / "empty.yaml"
    overlay.write_text("spark:\n  # master: local[1]\nnightly:\n")
    assert replace(load_config(overlay), sources=()) == replace(load_config(None), sources=())


def test_type_errors_keep_their_messages(tmp_path: Path) -> None:
    overlay = tmp_path / "types.yaml"
    overlay.write_text("nightly:\n  min_segment_size: 1.5\n")
    with pytest.raises(ConfigError, match=r"'nightly\.min_segment_size' must be int, found 1\.5"):
        load_config(overlay)
    overlay.write_text("events:\n  allow_negative_values: 'no'\n")
    with pytest.raises(ConfigError, match=r"'events\.allow_negative_values' must be true or false, found 'no'"):
        load_config(overlay)
    overlay.write_text("nightly:\n  confidence: 1\n")
    assert load_config(overlay).nightly.confidence == 1.0


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
