"""Application config: `conf/base.yaml` layered with an overlay, parsed once into frozen dataclasses.

Errors name the file and the key path, so a typo never surfaces later as a KeyError deep in a job.
Segment definitions (`conf/segments.yaml`) are parsed by `segments_lib.language.definitions`.

The project's top-level `conf/` folder ships inside the package as `segments_lib.conf` (setup.py maps
it; `make package` puts it into the --py-files zip), and is read with `importlib.resources`, so a
wheel, the zip and an editable install read the same files.

    python -m segments_lib.config --reference > docs/config-reference.md
    python -m segments_lib.config --conf local          # the merged config
"""

from __future__ import annotations

import argparse
import atexit
import difflib
import functools
import importlib.resources
import os
import re
import shutil
import sys
import tempfile
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_type_hints

import yaml

from segments_lib.language.definitions import parse_duration
from segments_lib.locations import Location, LocationError, is_file, read_text

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

# The folder above segments_lib: a source checkout's project folder, or site-packages / the zip for an
# installed copy (see `relative_root`).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF_PACKAGE = "segments_lib.conf"


class ConfigError(ValueError):
    """A config file is invalid; the message names the file and the key path."""


@dataclass(frozen=True)
class EventColumns:
    """Names of the source columns that map onto the events contract.

    The defaults are the contract's own column names (no renaming), so code and tests can describe a
    source that already follows the contract; the config's values always come from `conf/base.yaml`
    (`events.columns`), and tests/test_config_reference.py keeps the two equal.
    """
    user_col: str = "user_id"
    event_col: str = "event_name"
    time_col: str = "event_time"
    value_col: str | None = "event_value"  # None: the source has no value column (event_value is null)


# The formats `events.format` accepts (segments_lib/store/sources.py reads each; docs/sources.md).
EVENT_FORMATS = ("delta", "parquet", "csv", "json", "table", "jdbc")
FILE_FORMATS = ("delta", "parquet", "csv", "json")  # read from events.path
TIME_UNITS = ("seconds", "milliseconds")
# Letters of a Spark datetime pattern that read a zone or an offset: such a pattern gives zone-aware
# times, so events.source_timezone cannot apply to them.
_ZONE_PATTERN_LETTERS = frozenset("VzOXxZ")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The driver class of the common databases (`jdbc:<name>:`), so a config names only the URL. Spark
# needs the class named: a driver JAR from spark.jars is not visible to java.sql.DriverManager.
JDBC_DRIVERS = {
    "postgresql": "org.postgresql.Driver",
    "mysql": "com.mysql.cj.jdbc.Driver",
    "mariadb": "org.mariadb.jdbc.Driver",
    "sqlserver": "com.microsoft.sqlserver.jdbc.SQLServerDriver",
    "oracle": "oracle.jdbc.OracleDriver",
    "db2": "com.ibm.db2.jcc.DB2Driver",
}


def jdbc_driver(url: str | None) -> str | None:
    """The usual driver class for a JDBC URL, or None for a database not in JDBC_DRIVERS."""
    match = re.match(r"^jdbc:([a-z0-9]+):", url or "")
    return JDBC_DRIVERS.get(match.group(1)) if match else None


# A secret written into a JDBC URL (user:password@host, ?password=..., ;password=...).
_URL_SECRET = re.compile(r"(?i)(//[^/@]*:[^/@]*@)|([?&;]password=)")


# Every default below lives in conf/base.yaml (docs/config-reference.md lists them); these classes only
# name and type the parsed values.
@dataclass(frozen=True)
class CsvOptions:
    header: bool
    delimiter: str
    quote: str


@dataclass(frozen=True)
class JdbcConfig:
    url: str | None  # jdbc:postgresql://host:5432/db, never with credentials in it
    table: str | None  # a table name; exactly one of table and query
    query: str | None  # a SELECT whose rows are the events
    driver: str | None  # the driver class; None: the usual one for the URL's database (JDBC_DRIVERS)
    user_env: str | None  # names of the environment variables holding the credentials (never the values)
    password_env: str | None
    num_partitions: int  # parallel reads, split on the time column
    fetch_size: int  # rows per round trip


@dataclass(frozen=True)
class EventsConfig:
    path: Location
    format: str  # one of EVENT_FORMATS
    table: str | None  # format table: a catalog table name
    csv: CsvOptions
    jdbc: JdbcConfig
    columns: EventColumns
    time_format: str | None  # a Spark datetime pattern for string times; None: ISO 8601
    time_unit: str | None  # seconds | milliseconds: numeric epoch times; None: not epoch
    source_timezone: str | None  # zone of zone-less source times; None: they are UTC
    dedup_key: tuple[str, ...]
    allow_negative_values: bool
    max_rejected_share: float
    validated_path: Location  # the validated events, kept incrementally (Delta, partitioned by event_date)
    late_days: int  # each night re-validates this many days before the newest validated day


@dataclass(frozen=True)
class OutputConfig:
    root: Location
    catalog_database: str | None  # register tables in this database when set


@dataclass(frozen=True)
class MlflowConfig:
    tracking_uri: str  # resolved: config value, else MLFLOW_TRACKING_URI, else embedded sqlite
    artifact_location: Location
    experiment_prefix: str
    on_unreachable: str  # fail | score_with_last_champion


@dataclass(frozen=True)
class SparkConfig:
    master: str | None  # None: local[*] unless spark-submit already chose one
    app_name: str
    delta_package: str
    jars_cache_dir: Path
    delta_jars: tuple[str, ...]  # pre-downloaded JARs for clusters without internet
    extra_packages: tuple[str, ...]  # resolved and cached with delta_package (e.g. hadoop-aws for s3a://)
    exclude_packages: tuple[str, ...]  # groupId:artifactId left out of the resolution
    conf: Mapping[str, str]


@dataclass(frozen=True)
class NightlyConfig:
    control_share: float
    control_rotate_every: timedelta  # whole days: the control group is re-drawn once per period of this length
    control_experiment: str | None  # a name: the draw is kept until the name changes (rotation ignored)
    min_segment_size: int
    threshold_curve_points: int
    confidence: float
    backtest_flag_nights: int
    score_psi_retrain: float
    parallel_segments: int  # segments of one night trained and scored at once, in driver threads


@dataclass(frozen=True)
class DemoConfig:
    users: int
    days: int
    seed: int
    end_date: str


@dataclass(frozen=True)
class AppConfig:
    workspace: Location
    events: EventsConfig
    quarantine_path: Location
    output: OutputConfig
    mlflow: MlflowConfig
    spark: SparkConfig
    precision_levels: Mapping[str, float]
    nightly: NightlyConfig
    demo: DemoConfig
    segments_file: Location
    sources: tuple[Path | Location, ...]  # the config files read, in merge order

    def table_path(self, table: str) -> Location:
        return self.output.root / table


def _deep_merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(dict(merged[key]), value)
        elif value is None and isinstance(merged.get(key), Mapping):
            continue  # an empty section (`spark:` with every entry commented out) changes nothing
        else:
            merged[key] = value
    return merged


def read_yaml(path: Path | Location | Traversable) -> dict[str, Any]:
    try:
        text = read_text(path) if isinstance(path, Location) else path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except LocationError as exc:
        raise ConfigError(str(exc)) from exc
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


# Sections whose keys are chosen by the user (any Spark setting, any level name): base.yaml gives their
# default entries, not the list of allowed keys.
OPEN_SECTIONS = frozenset({"spark.conf", "precision_levels"})


def shipped_base() -> dict[str, Any]:
    """The parsed `base.yaml`: every key with its default; the allowed keys of every section."""
    return read_yaml(_conf_file("base.yaml"))


def check_known_keys(data: Mapping[str, Any], schema: Mapping[str, Any], source: str, path: str = "") -> None:
    """Raise for a key that `base.yaml` (`schema`) does not define, naming `source` and the key path."""
    allowed = [str(k) for k in schema]
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in schema:
            raise ConfigError(
                f"{source}: unknown key '{key_path}'{suggest(str(key), allowed)}; "
                f"valid keys: {', '.join(sorted(allowed))}"
            )
        if isinstance(value, Mapping) and isinstance(schema[key], Mapping) and key_path not in OPEN_SECTIONS:
            check_known_keys(value, schema[key], source, key_path)


class _Section:
    """Reads one mapping of the merged config, remembering the key path for error messages.

    `schema` is the same mapping in base.yaml: a key that is null there may be null (unset) here.
    """
    def __init__(self, source: str, path: str, data: Any, schema: Any) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: {path or '<top>'} must be a mapping, found {type(data).__name__}")
        self.source, self.path, self.data = source, path, data
        self.schema = schema if isinstance(schema, Mapping) else {}

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def section(self, key: str) -> _Section:
        return _Section(self.source, self._key(key), self.get(key, dict), self.schema.get(key))

    def get(self, key: str, kind: type) -> Any:
        if key not in self.data:
            raise ConfigError(f"{self.source}: missing required key '{self._key(key)}' "
                              "(conf/base.yaml defines every key)")
        value = self.data[key]
        if value is None:
            if key in self.schema and self.schema[key] is None:
                return None  # null in base.yaml: "unset" is meaningful
            raise ConfigError(f"{self.source}: '{self._key(key)}' must be {kind.__name__}, found null")
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is bool and not isinstance(value, bool):
            raise ConfigError(f"{self.source}: '{self._key(key)}' must be true or false, found {value!r}")
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            kind_name = "a mapping" if kind is dict else kind.__name__
            raise ConfigError(
                f"{self.source}: '{self._key(key)}' must be {kind_name}, found {value!r}"
            )
        return value


def _expanded(value: str | os.PathLike[str]) -> Path:
    """A configured local path with `$VARIABLES` and `~` expanded, not yet anchored anywhere."""
    return Path(os.path.expandvars(str(value))).expanduser()


def _location(sec: _Section, key: str, base: Location) -> Location:
    """A configured location (a path or a URI); a relative path is anchored at `base`."""
    try:
        return Location.parse(sec.get(key, str), base)
    except LocationError as exc:
        raise ConfigError(f"{sec.source}: '{sec._key(key)}': {exc}") from exc


def _local_path(root: Path, value: str) -> Path:
    """A setting that must be on this machine's disk (the JAR cache), anchored at `root`."""
    path = _expanded(value)
    return path if path.is_absolute() else root / path


def _coordinates(sec: _Section, key: str, parts: int) -> tuple[str, ...]:
    """Maven coordinates: group:artifact:version (`parts` 3) or group:artifact (2), checked here so a
    typo is a config error, not an Ivy stack trace."""
    values = tuple(str(v).strip() for v in sec.get(key, list))
    shape = "group:artifact:version" if parts == 3 else "group:artifact"
    for value in values:
        if len(value.split(":")) != parts or not all(value.split(":")):
            raise ConfigError(f"{sec.source}: '{sec._key(key)}' entries must be {shape}, found {value!r}")
    return values


def _embedded_store(workspace: Location, source: str) -> str:
    """The embedded SQLite tracking store under the workspace, which must then be on the local disk."""
    if not workspace.is_local:
        raise ConfigError(
            f"{source}: workspace {workspace} is not on the local disk, so the embedded MLflow store "
            "(SQLite) cannot live there: set 'mlflow.tracking_uri' (a tracking server or a database URL)"
        )
    return f"sqlite:///{(workspace.path / 'mlflow' / 'mlflow.db').as_posix()}"


def _segments_location(top: _Section, default: str | None) -> Location:
    try:
        return segments_path(top.get("segments_file", str), default)
    except LocationError as exc:
        raise ConfigError(f"{top.source}: 'segments_file': {exc}") from exc


def _parse_simple(sec: _Section, cls: type) -> Any:
    """A section of plain values: each field's type from the dataclass, its value from the merged YAML."""
    hints = get_type_hints(cls)
    return cls(**{f.name: sec.get(f.name, hints[f.name]) for f in fields(cls)})


@functools.cache
def _zone_names() -> frozenset[str]:
    """The IANA zone names (the ones java.time, hence Spark, knows too), read once."""
    return frozenset(zoneinfo.available_timezones())


_OFFSET_ZONE = re.compile(r"^(?:(?:UTC|GMT|UT)?[+-]\d{1,2}(?::?\d{2})?|Z|UTC|GMT|UT)$")


def check_timezone(value: str, source: str, key: str) -> str:
    """A zone Spark and java.time accept: an IANA name (Europe/Berlin) or a fixed offset (+01:00, UTC)."""
    names = _zone_names()
    if value in names or _OFFSET_ZONE.match(value):
        return value
    close = difflib.get_close_matches(value, sorted(names), n=1, cutoff=0.6)
    if not close:  # 'berlin', 'europe/paris': match the city or the case
        lowered = {n.lower(): n for n in names}
        by_city = {n.rsplit("/", 1)[-1].lower(): n for n in names}
        hit = lowered.get(value.lower()) or by_city.get(value.lower().replace(" ", "_"))
        close = [hit] if hit else []
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"{source}: '{key}' is not a known time zone: {value!r}{hint}; use an IANA name such as "
                      "Europe/Berlin, an offset such as +01:00, or null for UTC")


def pattern_has_zone(pattern: str) -> bool:
    """Whether a Spark datetime pattern reads a zone or an offset (letters outside 'quoted' text)."""
    unquoted = re.sub(r"'[^']*'", "", pattern)
    return any(ch in _ZONE_PATTERN_LETTERS for ch in unquoted)


def _parse_columns(sec: _Section) -> EventColumns:
    names = {f.name: sec.get(f.name, str) for f in fields(EventColumns) if f.name != "value_col"}
    # value_col may be null (no value column) although base.yaml names one: read it by hand.
    if "value_col" not in sec.data:
        sec.get("value_col", str)  # the missing-key error
    value_col = sec.data["value_col"]
    if value_col is not None and not isinstance(value_col, str):
        raise ConfigError(f"{sec.source}: '{sec._key('value_col')}' must be a column name or null, "
                          f"found {value_col!r}")
    return EventColumns(**names, value_col=value_col)


def _parse_csv(sec: _Section) -> CsvOptions:
    options = _parse_simple(sec, CsvOptions)
    for key in ("delimiter", "quote"):
        if len(getattr(options, key)) != 1:
            raise ConfigError(f"{sec.source}: '{sec._key(key)}' must be one character, "
                              f"found {getattr(options, key)!r}")
    return options


def _parse_jdbc(sec: _Section, fmt: str) -> JdbcConfig:
    jdbc = JdbcConfig(
        url=sec.get("url", str), table=sec.get("table", str), query=sec.get("query", str),
        driver=sec.get("driver", str),
        user_env=sec.get("user_env", str), password_env=sec.get("password_env", str),
        num_partitions=sec.get("num_partitions", int), fetch_size=sec.get("fetch_size", int),
    )
    for key in ("user_env", "password_env"):
        name = getattr(jdbc, key)
        if name is not None and not _ENV_NAME.match(name):
            raise ConfigError(f"{sec.source}: '{sec._key(key)}' names an environment variable (such as "
                              f"EVENTS_DB_PASSWORD), not a value; found a value that is not a variable name")
    if jdbc.num_partitions < 1 or jdbc.fetch_size < 1:
        raise ConfigError(f"{sec.source}: '{sec._key('num_partitions')}' and '{sec._key('fetch_size')}' "
                          "must be at least 1")
    if jdbc.url is not None and _URL_SECRET.search(jdbc.url):
        # The URL is logged and described; a secret in it would be too. Credentials come from the
        # environment variables the config names.
        raise ConfigError(f"{sec.source}: '{sec._key('url')}' must not hold credentials: set "
                          f"'{sec._key('user_env')}' and '{sec._key('password_env')}' to the names of "
                          "environment variables that hold them")
    if fmt != "jdbc":
        return jdbc
    if not jdbc.url:
        raise ConfigError(f"{sec.source}: events.format is jdbc but '{sec._key('url')}' is not set "
                          "(e.g. jdbc:postgresql://host:5432/analytics)")
    if not jdbc.url.startswith("jdbc:"):
        raise ConfigError(f"{sec.source}: '{sec._key('url')}' must start with jdbc:, found {jdbc.url!r}")
    if jdbc.driver is None and jdbc_driver(jdbc.url) is None:
        raise ConfigError(f"{sec.source}: no known JDBC driver for {jdbc.url.split('//')[0]} URLs: set "
                          f"'{sec._key('driver')}' to the driver's class name (its JAR in spark.extra_packages)")
    if (jdbc.table is None) == (jdbc.query is None):
        raise ConfigError(f"{sec.source}: events.format is jdbc: set exactly one of '{sec._key('table')}' "
                          f"and '{sec._key('query')}'")
    return jdbc


def _parse_events(sec: _Section, workspace: Location) -> EventsConfig:
    source = sec.source
    columns = _parse_columns(sec.section("columns"))
    fmt = sec.get("format", str)
    if fmt not in EVENT_FORMATS:
        raise ConfigError(f"{source}: 'events.format' must be one of {', '.join(EVENT_FORMATS)}, "
                          f"found {fmt!r}{suggest(fmt, EVENT_FORMATS)}")
    table = sec.get("table", str)
    if fmt == "table" and not table:
        raise ConfigError(f"{source}: events.format is table but 'events.table' is not set "
                          "(a catalog table name such as analytics.events)")
    time_format, time_unit = sec.get("time_format", str), sec.get("time_unit", str)
    zone = sec.get("source_timezone", str)
    if zone is not None:
        check_timezone(zone, source, "events.source_timezone")
    if time_unit is not None:
        if time_unit not in TIME_UNITS:
            raise ConfigError(f"{source}: 'events.time_unit' must be seconds, milliseconds or null, "
                              f"found {time_unit!r}{suggest(time_unit, TIME_UNITS)}")
        if time_format is not None:
            raise ConfigError(f"{source}: set one of 'events.time_unit' (epoch numbers) and "
                              "'events.time_format' (a datetime pattern), not both")
        if zone is not None:
            raise ConfigError(f"{source}: 'events.source_timezone' is {zone!r} but events.time_unit is set: "
                              "epoch times are UTC by definition; set events.source_timezone to null")
    if time_format is not None and zone is not None and pattern_has_zone(time_format):
        raise ConfigError(f"{source}: 'events.source_timezone' is {zone!r} but events.time_format "
                          f"{time_format!r} reads a zone or offset: the times carry their own zone; "
                          "set events.source_timezone to null")
    share = sec.get("max_rejected_share", float)
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"{source}: 'events.max_rejected_share' must be in [0, 1], found {share}")
    late_days = sec.get("late_days", int)
    if late_days < 0:
        raise ConfigError(f"{source}: 'events.late_days' must be 0 or more, found {late_days}")
    return EventsConfig(
        path=_location(sec, "path", workspace),
        format=fmt,
        table=table,
        csv=_parse_csv(sec.section("csv")),
        jdbc=_parse_jdbc(sec.section("jdbc"), fmt),
        columns=columns,
        time_format=time_format,
        time_unit=time_unit,
        source_timezone=zone,
        dedup_key=tuple(str(c) for c in sec.get("dedup_key", list)),
        allow_negative_values=sec.get("allow_negative_values", bool),
        max_rejected_share=share,
        validated_path=_location(sec, "validated_path", workspace),
        late_days=late_days,
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


_CONTROL_KEYS = ("control_rotate_every", "control_experiment")  # parsed by hand below


def _parse_rotation(sec: _Section) -> timedelta:
    """`nightly.control_rotate_every`: a duration of whole days (7d, 90d, 13w), at least one day."""
    key = sec._key("control_rotate_every")
    text = sec.get("control_rotate_every", str)
    try:
        period = parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"{sec.source}: '{key}': {exc}") from exc
    if period < timedelta(days=1) or period % timedelta(days=1):
        raise ConfigError(f"{sec.source}: '{key}' must be a whole number of days such as 90d or 13w, "
                          f"found {text!r}")
    return period


def _parse_experiment(sec: _Section) -> str | None:
    """`nightly.control_experiment`: null, or a non-empty name."""
    name = sec.get("control_experiment", str)
    if name is not None and not name.strip():
        raise ConfigError(f"{sec.source}: '{sec._key('control_experiment')}' must be a non-empty name or null, "
                          f"found {name!r}")
    return name


def _parse_nightly(sec: _Section, source: str) -> NightlyConfig:
    hints = get_type_hints(NightlyConfig)
    simple = {f.name: sec.get(f.name, hints[f.name]) for f in fields(NightlyConfig) if f.name not in _CONTROL_KEYS}
    nightly = NightlyConfig(**simple, control_rotate_every=_parse_rotation(sec),
                            control_experiment=_parse_experiment(sec))
    if not 0.0 <= nightly.control_share < 1.0:
        raise ConfigError(f"{source}: 'nightly.control_share' must be in [0, 1), found {nightly.control_share}")
    if nightly.parallel_segments < 1:
        raise ConfigError(f"{source}: 'nightly.parallel_segments' must be at least 1, "
                          f"found {nightly.parallel_segments}")
    return nightly


def _parse_mlflow(ml: _Section, workspace: Location, source: str) -> MlflowConfig:
    tracking_uri = (
        ml.get("tracking_uri", str)
        or os.environ.get("MLFLOW_TRACKING_URI")
        or _embedded_store(workspace, source)
    )
    on_unreachable = ml.get("on_unreachable", str)
    if on_unreachable not in ("fail", "score_with_last_champion"):
        raise ConfigError(
            f"{source}: 'mlflow.on_unreachable' must be fail or score_with_last_champion, "
            f"found {on_unreachable!r}"
        )
    return MlflowConfig(
        tracking_uri=tracking_uri,
        artifact_location=_location(ml, "artifact_location", workspace),
        experiment_prefix=ml.get("experiment_prefix", str),
        on_unreachable=on_unreachable,
    )


def parse_config(data: Mapping[str, Any], source: str, root: Path | None = None,
                 schema: Mapping[str, Any] | None = None) -> AppConfig:
    """The merged YAML as an `AppConfig`; `schema` (default: the shipped base.yaml) names the valid keys.

    `root` anchors a relative `workspace` (default: `relative_root()`).
    """
    schema = shipped_base() if schema is None else schema
    root = relative_root() if root is None else root
    check_known_keys(data, schema, source)
    top = _Section(source, "", data, schema)
    workspace_value = os.environ.get("SEGMENTS_WORKSPACE") or top.get("workspace", str)
    try:
        workspace = Location.parse(workspace_value, Location.parse(root))
    except LocationError as exc:
        raise ConfigError(f"{source}: 'workspace': {exc}") from exc
    events = _parse_events(top.section("events"), workspace)

    out = top.section("output")
    output = OutputConfig(
        root=_location(out, "root", workspace),
        catalog_database=out.get("catalog_database", str),
    )

    mlflow_cfg = _parse_mlflow(top.section("mlflow"), workspace, source)

    sp = top.section("spark")
    spark_cfg = SparkConfig(
        master=sp.get("master", str),
        app_name=sp.get("app_name", str),
        delta_package=sp.get("delta_package", str),
        jars_cache_dir=_local_path(root, sp.get("jars_cache_dir", str)),
        delta_jars=tuple(str(j) for j in sp.get("delta_jars", list)),
        extra_packages=_coordinates(sp, "extra_packages", 3),
        exclude_packages=_coordinates(sp, "exclude_packages", 2),
        conf={str(k): str(v) for k, v in sp.get("conf", dict).items()},
    )

    return AppConfig(
        workspace=workspace,
        events=events,
        quarantine_path=_location(top, "quarantine_path", workspace),
        output=output,
        mlflow=mlflow_cfg,
        spark=spark_cfg,
        precision_levels=_parse_levels(top.section("precision_levels")),
        nightly=_parse_nightly(top.section("nightly"), source),
        demo=_parse_simple(top.section("demo"), DemoConfig),
        segments_file=_segments_location(top, schema.get("segments_file")),
        sources=(),
    )


# ---------------------------------------------------------------------------------------------------
# Where the files are: the shipped conf, overlays, the segments file, relative paths.

def shipped_conf() -> Traversable:
    """The shipped config folder (`segments_lib.conf`): in a wheel, the --py-files zip or an editable install."""
    try:
        return importlib.resources.files(CONF_PACKAGE)
    except ModuleNotFoundError:
        # segments_lib imported straight from a source checkout that was never installed (spark-submit
        # jobs/nightly.py from the repo): the package is the checkout's conf/ folder itself.
        return PROJECT_ROOT / "conf"


def _conf_file(name: str) -> Traversable:
    return shipped_conf() / name


@functools.cache
def shipped_path(name: str) -> Path:
    """A shipped config file as a real path: itself, or a copy under its own name in a temporary folder
    (removed at exit) when it lives in a zip."""
    resource = _conf_file(name)
    if isinstance(resource, Path):
        return resource
    folder = Path(tempfile.mkdtemp(prefix="segments_lib-conf-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    copy = folder / name
    copy.write_bytes(resource.read_bytes())
    return copy


def source_checkout() -> Path | None:
    """The project folder when segments_lib runs from a source checkout (editable install or the repo on
    sys.path), else None."""
    is_checkout = (PROJECT_ROOT / "setup.py").is_file() and (PROJECT_ROOT / "conf" / "base.yaml").is_file()
    return PROJECT_ROOT if is_checkout else None


def relative_root() -> Path:
    """What a relative `workspace` resolves against: the project folder of a source checkout, else the
    current directory (an installed package has no project folder)."""
    return source_checkout() or Path.cwd()


def find_overlay(overlay: str | os.PathLike[str]) -> Path | Location | Traversable:
    """An overlay file: a URI (`s3a://...`, read with pyarrow.fs) or a path (absolute or relative to the
    current directory) first; a bare name such as `local` or `cluster.yaml` is then
    `./conf/<name>.yaml` in the current directory, else the shipped one."""
    location = Location.parse(overlay)
    if not location.is_local:
        if not is_file(location):
            raise ConfigError(f"{location}: config overlay not found (or not readable with the "
                              "environment's object-store credentials)")
        return location
    path = _expanded(overlay)
    if path.is_file():
        return path
    if len(path.parts) != 1 or path.suffix not in ("", ".yaml", ".yml"):
        raise ConfigError(f"{path}: config file not found")
    name = path.name if path.suffix else f"{path.name}.yaml"
    local = Path.cwd() / "conf" / name
    if local.is_file():
        return local
    shipped = shipped_conf() / name
    if shipped.is_file():
        return shipped
    # base.yaml and the segment definition files (segments*.yaml) are shipped beside the overlays.
    names = sorted(f.name.removesuffix(".yaml") for f in shipped_conf().iterdir()
                   if f.name.endswith(".yaml") and f.name != "base.yaml" and not f.name.startswith("segments"))
    raise ConfigError(f"{overlay}: config overlay not found: not a file, and neither {local} nor a shipped "
                      f"conf/{name} exists (shipped overlays: {', '.join(names)})")


def segments_path(value: str, default: str | None) -> Location:
    """`segments_file`: a URI or an absolute path as is; a relative path against the current directory
    (where spark-submit --files puts a shipped file) and, for base.yaml's default, the shipped
    conf/segments.yaml otherwise."""
    location = Location.parse(value, Location.parse(Path.cwd()))
    if not location.is_local or _expanded(value).is_absolute():
        return location
    path = _expanded(value)
    if not location.path.is_file() and value == default and path.parent == Path("conf"):
        shipped = _conf_file(path.name)
        if shipped.is_file():
            return Location.parse(shipped_path(path.name))
    return location


def segments_file_override(path: str | os.PathLike[str] | None) -> dict[str, str] | None:
    """`overrides` for a job's --segments-file flag: resolved as `segments_file` in config is."""
    return {"segments_file": str(path)} if path else None


def load_config(overlay: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> AppConfig:
    """Load the shipped `base.yaml`, merge an overlay (a name such as 'local' or a path), then `overrides`.

    Each layer may only use keys that base.yaml defines; an unknown key names the layer's own file.
    """
    base_path = _conf_file("base.yaml")
    schema = read_yaml(base_path)
    data = dict(schema)
    sources = [base_path]
    if overlay:
        overlay_path = find_overlay(overlay)
        layer = read_yaml(overlay_path)
        check_known_keys(layer, schema, str(overlay_path))
        data = _deep_merge(data, layer)
        sources.append(overlay_path)
    if overrides:
        check_known_keys(overrides, schema, "overrides")
        data = _deep_merge(data, overrides)
    source = " + ".join(p.name for p in sources)
    cfg = parse_config(data, source, schema=schema)
    return replace(cfg, sources=tuple(p if isinstance(p, Location) else Path(str(p)) for p in sources))


# ---------------------------------------------------------------------------------------------------
# docs/config-reference.md, generated from base.yaml: every key, its default and its comment.

_COMMENT_LINE = re.compile(r"^\s*#\s?(?P<text>.*)$")
_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[^\s#:'\"][^:#]*?):(?:\s+(?P<rest>.*))?$")
_INLINE_COMMENT = re.compile(r"(?:^|\s)#\s?(?P<text>.*)$")


def base_comments(text: str) -> dict[tuple[str, ...], str]:
    """{key path: the comment above or beside the key} of a YAML text.

    A comment block belongs to the key right below it; a block followed by a blank line (the file's
    introduction, say) belongs to no key.
    """
    pending: list[str] = []
    stack: list[tuple[int, str]] = []
    comments: dict[tuple[str, ...], str] = {}
    for line in text.splitlines():
        if not line.strip():
            pending = []
            continue
        comment = _COMMENT_LINE.match(line)
        if comment:
            pending.append(comment.group("text").strip())
            continue
        match = _KEY_LINE.match(line)
        if not match:
            continue  # a continuation line of a value
        indent = len(match.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group("key").strip()))
        inline = _INLINE_COMMENT.search(match.group("rest") or "")
        parts = [*pending, inline.group("text").strip() if inline else ""]
        comments[tuple(key for _, key in stack)] = " ".join(p for p in parts if p)
        pending = []
    return comments


def _yaml_value(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text.removesuffix("...").strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _rows(node: Mapping[str, Any], comments: dict[tuple[str, ...], str], prefix: tuple[str, ...]) -> list[str]:
    rows = []
    for key, value in node.items():
        path = (*prefix, str(key))
        default = "(mapping)" if isinstance(value, Mapping) else f"`{_cell(_yaml_value(value))}`"
        rows.append(f"| `{'.'.join(path)}` | {default} | {_cell(comments.get(path, ''))} |")
        if isinstance(value, Mapping):
            rows.extend(_rows(value, comments, path))
    return rows


def render_reference() -> str:
    """The Markdown of docs/config-reference.md for the shipped base.yaml."""
    text = _conf_file("base.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    comments = base_comments(text)
    lines = [
        "# Config reference",
        "",
        "<!-- Generated from conf/base.yaml by `python -m segments_lib.config --reference > "
        "docs/config-reference.md`; edit the comments in conf/base.yaml, then regenerate. "
        "tests/test_config_reference.py fails when this page is stale. -->",
        "",
        "Every key of the application config, its default and what it means. `conf/base.yaml` is the one "
        "place defaults live: the parser has no fallbacks of its own, and an overlay (`--conf local`, `--conf cluster` "
        "or a path) may set only the keys listed here. How overlays are found and how paths resolve: "
        "[configuration.md](configuration.md#application-config). Segment definitions have their own "
        "language: [configuration.md](configuration.md).",
    ]
    for key, value in data.items():
        lines += ["", f"## `{key}`", ""]
        if comments.get((key,)):
            lines += [comments[(key,)], ""]
        if isinstance(value, Mapping):
            if key in OPEN_SECTIONS:
                lines += ["Its keys are free: an overlay adds entries or replaces these defaults.", ""]
            lines += ["| key | default | meaning |", "|---|---|---|", *_rows(value, comments, (key,))]
        else:
            lines.append(f"Default: `{_yaml_value(value)}`.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="segments_lib.config", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", action="store_true",
                        help="print docs/config-reference.md (every key of base.yaml, its default and comment)")
    parser.add_argument("--conf", default=None, help="print the merged config for this overlay")
    args = parser.parse_args(argv)
    if args.reference:
        sys.stdout.write(render_reference())
        return 0
    try:
        print(load_config(args.conf))
    except ConfigError as exc:
        print(f"config: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
