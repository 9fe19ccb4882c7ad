"""Application config: `conf/base.yaml` layered with an overlay, parsed once into frozen dataclasses.

Errors name the file and the key path, so a typo never surfaces later as a KeyError deep in a job.
Segment definitions (`conf/segments.yaml`) are parsed by `segments_lib.language.definitions`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = PROJECT_ROOT / "conf"


class ConfigError(ValueError):
    """A config file is invalid; the message names the file and the key path."""


@dataclass(frozen=True)
class EventColumns:
    """Names of the source columns that map onto the events contract."""
    user_col: str = "user_id"
    event_col: str = "event_name"
    time_col: str = "event_time"
    value_col: str = "event_value"


@dataclass(frozen=True)
class EventsConfig:
    path: Path
    format: str = "delta"  # delta | parquet
    columns: EventColumns = field(default_factory=EventColumns)
    source_timezone: str = "UTC"
    dedup_key: tuple[str, ...] = ("user_id", "event_name", "event_time", "event_value")
    allow_negative_values: bool = False
    max_rejected_share: float = 0.05


@dataclass(frozen=True)
class OutputConfig:
    root: Path
    catalog_database: str | None = None  # register tables in this database when set


@dataclass(frozen=True)
class MlflowConfig:
    tracking_uri: str  # resolved: config value, else MLFLOW_TRACKING_URI, else embedded sqlite
    artifact_location: Path
    experiment_prefix: str = "segments"
    on_unreachable: str = "fail"  # fail | score_with_last_champion


@dataclass(frozen=True)
class SparkConfig:
    master: str | None = None  # None: local[*] unless spark-submit already chose one
    app_name: str = "predictive-segments"
    delta_package: str = "io.delta:delta-spark_4.2_2.13:4.4.0"
    jars_cache_dir: Path = Path("~/.cache/predictive-segments/jars")
    delta_jars: tuple[str, ...] = ()  # pre-downloaded JARs for clusters without internet
    conf: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NightlyConfig:
    control_share: float = 0.10
    min_segment_size: int = 50
    threshold_curve_points: int = 80
    confidence: float = 0.95
    backtest_flag_nights: int = 3
    score_psi_retrain: float = 0.25
    parallel_segments: int = 2  # segments of one night trained and scored at once, in driver threads


@dataclass(frozen=True)
class DemoConfig:
    users: int = 20_000
    days: int = 120
    seed: int = 7
    end_date: str = "2026-06-01"


@dataclass(frozen=True)
class AppConfig:
    workspace: Path
    events: EventsConfig
    quarantine_path: Path
    output: OutputConfig
    mlflow: MlflowConfig
    spark: SparkConfig
    precision_levels: Mapping[str, float]
    nightly: NightlyConfig
    demo: DemoConfig
    segments_file: Path
    sources: tuple[Path, ...]

    def table_path(self, table: str) -> Path:
        return self.output.root / table


def _deep_merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, found {type(data).__name__}")
    return data


def suggest(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """' (did you mean X?)' for a close match, else an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Section:
    """Reads one mapping of the merged config, remembering the key path for error messages."""
    def __init__(self, source: str, path: str, data: Any) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: {path or '<top>'} must be a mapping, found {type(data).__name__}")
        self.source, self.path, self.data = source, path, data

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def check_keys(self, allowed: list[str]) -> None:
        for key in self.data:
            if key not in allowed:
                raise ConfigError(
                    f"{self.source}: unknown key '{self._key(key)}'{suggest(str(key), allowed)}; "
                    f"valid keys: {', '.join(sorted(allowed))}"
                )

    def section(self, key: str) -> _Section:
        return _Section(self.source, self._key(key), self.data.get(key))

    def get(self, key: str, kind: type, default: Any = None, required: bool = False) -> Any:
        if key not in self.data or self.data[key] is None:
            if required:
                raise ConfigError(f"{self.source}: missing required key '{self._key(key)}'")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is bool and not isinstance(value, bool):
            raise ConfigError(f"{self.source}: '{self._key(key)}' must be true or false, found {value!r}")
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(
                f"{self.source}: '{self._key(key)}' must be {kind.__name__}, found {value!r}"
            )
        return value


def _allowed(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def _resolve(base: Path, value: str | os.PathLike[str]) -> Path:
    path = Path(os.path.expandvars(str(value))).expanduser()
    return path if path.is_absolute() else (base / path)


def _parse_events(sec: _Section, workspace: Path) -> EventsConfig:
    sec.check_keys(_allowed(EventsConfig))
    cols = sec.section("columns")
    cols.check_keys(_allowed(EventColumns))
    columns = EventColumns(**{k: cols.get(k, str, getattr(EventColumns(), k)) for k in _allowed(EventColumns)})
    fmt = sec.get("format", str, "delta")
    if fmt not in ("delta", "parquet"):
        raise ConfigError(f"{sec.source}: 'events.format' must be delta or parquet, found {fmt!r}")
    share = sec.get("max_rejected_share", float, 0.05)
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"{sec.source}: 'events.max_rejected_share' must be in [0, 1], found {share}")
    dedup = sec.get("dedup_key", list, list(EventsConfig.dedup_key))
    return EventsConfig(
        path=_resolve(workspace, sec.get("path", str, required=True)),
        format=fmt,
        columns=columns,
        source_timezone=sec.get("source_timezone", str, "UTC"),
        dedup_key=tuple(str(c) for c in dedup),
        allow_negative_values=sec.get("allow_negative_values", bool, False),
        max_rejected_share=share,
    )


def _parse_levels(sec: _Section) -> dict[str, float]:
    levels: dict[str, float] = {}
    for name, value in sec.data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
            raise ConfigError(
                f"{sec.source}: 'precision_levels.{name}' must be a number in (0, 1), found {value!r}"
            )
        levels[str(name)] = float(value)
    if not levels:
        raise ConfigError(f"{sec.source}: 'precision_levels' must define at least one level")
    return dict(sorted(levels.items(), key=lambda kv: -kv[1]))


def _parse_simple(sec: _Section, cls: type, converters: Mapping[str, Any] | None = None) -> Any:
    sec.check_keys(_allowed(cls))
    defaults = cls()
    values = {}
    for f in fields(cls):
        default = getattr(defaults, f.name)
        kind = type(default) if default is not None else str
        values[f.name] = sec.get(f.name, kind, default)
    for name, convert in (converters or {}).items():
        values[name] = convert(values[name])
    return cls(**values)


def _parse_nightly(sec: _Section, source: str) -> NightlyConfig:
    nightly = _parse_simple(sec, NightlyConfig)
    if nightly.parallel_segments < 1:
        raise ConfigError(f"{source}: 'nightly.parallel_segments' must be at least 1, "
                          f"found {nightly.parallel_segments}")
    return nightly


def parse_config(data: Mapping[str, Any], source: str, root: Path = PROJECT_ROOT) -> AppConfig:
    top = _Section(source, "", data)
    top.check_keys([
        "workspace", "events", "quarantine_path", "output", "mlflow", "spark",
        "precision_levels", "nightly", "demo", "segments_file",
    ])
    workspace = _resolve(root, os.environ.get("SEGMENTS_WORKSPACE") or top.get("workspace", str, "workspace"))
    events = _parse_events(top.section("events"), workspace)

    out = top.section("output")
    out.check_keys(_allowed(OutputConfig))
    output = OutputConfig(
        root=_resolve(workspace, out.get("root", str, "tables")),
        catalog_database=out.get("catalog_database", str, None),
    )

    ml = top.section("mlflow")
    ml.check_keys(["tracking_uri", "artifact_location", "experiment_prefix", "on_unreachable"])
    configured_uri = ml.get("tracking_uri", str, None)
    tracking_uri = (
        configured_uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{(workspace / 'mlflow' / 'mlflow.db').as_posix()}"
    )
    on_unreachable = ml.get("on_unreachable", str, "fail")
    if on_unreachable not in ("fail", "score_with_last_champion"):
        raise ConfigError(
            f"{source}: 'mlflow.on_unreachable' must be fail or score_with_last_champion, "
            f"found {on_unreachable!r}"
        )
    mlflow_cfg = MlflowConfig(
        tracking_uri=tracking_uri,
        artifact_location=_resolve(workspace, ml.get("artifact_location", str, "mlflow/artifacts")),
        experiment_prefix=ml.get("experiment_prefix", str, "segments"),
        on_unreachable=on_unreachable,
    )

    sp = top.section("spark")
    sp.check_keys(_allowed(SparkConfig))
    spark_conf = sp.get("conf", dict, {})
    spark_cfg = SparkConfig(
        master=sp.get("master", str, None),
        app_name=sp.get("app_name", str, SparkConfig.app_name),
        delta_package=sp.get("delta_package", str, SparkConfig.delta_package),
        jars_cache_dir=_resolve(root, sp.get("jars_cache_dir", str, str(SparkConfig.jars_cache_dir))),
        delta_jars=tuple(str(j) for j in sp.get("delta_jars", list, [])),
        conf={str(k): str(v) for k, v in spark_conf.items()},
    )

    return AppConfig(
        workspace=workspace,
        events=events,
        quarantine_path=_resolve(workspace, top.get("quarantine_path", str, "tables/events_quarantine")),
        output=output,
        mlflow=mlflow_cfg,
        spark=spark_cfg,
        precision_levels=_parse_levels(top.section("precision_levels")),
        nightly=_parse_nightly(top.section("nightly"), source),
        demo=_parse_simple(top.section("demo"), DemoConfig),
        segments_file=_resolve(root, top.get("segments_file", str, "conf/segments.yaml")),
        sources=(),
    )


def load_config(overlay: str | Path | None = None, conf_dir: Path = CONF_DIR,
                overrides: Mapping[str, Any] | None = None) -> AppConfig:
    """Load `base.yaml`, merge an overlay (a name such as 'local' or a path), then `overrides`."""
    base_path = conf_dir / "base.yaml"
    data = read_yaml(base_path)
    sources = [base_path]
    if overlay:
        overlay_path = Path(overlay)
        if not overlay_path.suffix:
            overlay_path = conf_dir / f"{overlay}.yaml"
        data = _deep_merge(data, read_yaml(overlay_path))
        sources.append(overlay_path)
    if overrides:
        data = _deep_merge(data, overrides)
    source = " + ".join(p.name for p in sources)
    cfg = parse_config(data, source)
    return _with_sources(cfg, tuple(sources))


def _with_sources(cfg: AppConfig, sources: tuple[Path, ...]) -> AppConfig:

    return replace(cfg, sources=sources)
