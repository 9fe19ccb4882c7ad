"""Reading the configured events source: Delta, Parquet, CSV, JSON lines, a catalog table or a database
over JDBC (docs/sources.md).

`read_events_source` returns the source's own rows and column names; `intake.events.conform` maps
them onto the events contract. A window `[since, until)` narrows the read where that is cheap (a
partition filter on an `event_date` date column, a WHERE on the time column in the database) and is
widened by a day on each side, because a source's dates and zone-less times may be local ones: the
result is a superset, and the caller filters exactly after conform.

A damaged source stops the read with a `SourceError` that names the file and the config key, never
a Java stack trace and never a silent skip (`spark.sql.files.ignoreCorruptFiles` stays off): a file
Spark cannot read (truncated, not Parquet) fails whatever action first touches it, inside
`damaged_files_named`; a Delta events table whose log is damaged, or an events path that is a file
where a folder belongs, is refused before the read.

Database credentials come only from the environment variables the config names
(`events.jdbc.user_env`, `events.jdbc.password_env`); neither value is ever logged, described or put
into an error message.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from py4j.java_gateway import is_instance_of
from py4j.protocol import Py4JError
from pyspark import SparkContext
from pyspark.sql import Column, DataFrame, DataFrameReader, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segments_lib.config import EventsConfig, jdbc_driver
from segments_lib.locations import Location
from segments_lib.store import filesystem, tables

log = logging.getLogger(__name__)

# The PostgreSQL JDBC driver, for `spark.extra_packages` (docs/sources.md); tests resolve the same one.
POSTGRES_DRIVER = "org.postgresql:postgresql:42.7.14"
EVENT_DATE = "event_date"
# Dates and zone-less times may be local ones: a day on each side of the window keeps every row of it.
_SLACK = timedelta(days=1)
_NUMERIC = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)


class SourceError(tables.TableError):
    """The events source is missing, unreachable or misconfigured; the message names the config key."""


@dataclass(frozen=True)
class SourceEvents:
    frame: DataFrame  # raw source rows, source column names (conform() maps them)
    version: int | None  # Delta version read, else None
    description: str  # e.g. "delta at /x/events v3", "jdbc postgresql://host/db table public.events" (no secrets)


def read_events_source(spark: SparkSession, events: EventsConfig, since: datetime | None = None,
                       until: datetime | None = None) -> SourceEvents:
    """The configured events source, narrowed to about `[since, until)` (UTC) where that is cheap."""
    since, until = _utc(since), _utc(until)
    if events.format == "jdbc":
        return _read_jdbc(spark, events, since, until)
    source = _read_table(spark, events) if events.format == "table" else _read_files(spark, events)
    return SourceEvents(_date_window(source.frame, since, until), source.version, source.description)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _date_window(frame: DataFrame, since: datetime | None, until: datetime | None) -> DataFrame:
    """Partition pruning: keep the `event_date` days around the window, when the source has that column."""
    field = next((f for f in frame.schema.fields if f.name == EVENT_DATE), None)
    if field is None or not isinstance(field.dataType, T.DateType):
        return frame
    if since is not None:
        frame = frame.where(F.col(EVENT_DATE) >= F.lit((since - _SLACK).date()))
    if until is not None:
        frame = frame.where(F.col(EVENT_DATE) <= F.lit((until + _SLACK).date()))
    return frame


# --- files and catalog tables ----------------------------------------------------------------------


def _read_files(spark: SparkSession, events: EventsConfig) -> SourceEvents:
    path, fmt = events.path, events.format
    try:
        found = filesystem.exists(spark, path, "events.path")
    except filesystem.StorageError as exc:
        raise SourceError(str(exc)) from exc
    if fmt == "delta":
        if found and not filesystem.is_directory(spark, path, "events.path"):
            raise SourceError(
                f"no Delta table at {path} (events.path in config): it is a file, and a Delta table is a folder "
                "holding a _delta_log folder. Point events.path at the table's folder, or set events.format to "
                "the file's format (parquet, csv, json)."
            )
        if found:
            check_delta_log(spark, path)
        if not found or not tables.is_delta_table(spark, path):
            raise SourceError(
                f"events table not found: no Delta table at {path} (events.path in config). "
                "Generate demo data with `python -m jobs.generate_demo_events` or point events.path at your table."
            )
        version = tables.delta_version(spark, path)
        return SourceEvents(tables.read_delta(spark, path, version=version), version, f"delta at {path} v{version}")
    if not found:
        raise SourceError(f"events table not found: no {fmt} data at {path} (events.path in config)")
    if fmt == "parquet":
        frame = spark.read.parquet(str(path))
    elif fmt == "csv":
        # Every column as text: conform parses times and numbers, and what does not parse is
        # quarantined with a reason (a schema inferred from a sample would fail the whole read instead).
        frame = (spark.read.option("header", events.csv.header).option("sep", events.csv.delimiter)
                 .option("quote", events.csv.quote).option("escape", events.csv.quote)
                 .option("mode", "PERMISSIVE").option("inferSchema", False).csv(str(path)))
    else:  # json lines; a line that is not JSON gets null columns (quarantined) and _corrupt_record
        frame = spark.read.option("mode", "PERMISSIVE").json(str(path))
    return SourceEvents(frame, None, f"{fmt} at {path}")


def _read_table(spark: SparkSession, events: EventsConfig) -> SourceEvents:
    name = events.table
    if not spark.catalog.tableExists(name):
        raise SourceError(f"events table not found: no catalog table {name} (events.table in config)")
    version = None
    try:
        if tables.is_delta_table(spark, _table_location(spark, name)):
            version = int(spark.sql(f"DESCRIBE HISTORY {name} LIMIT 1").first()["version"])
    except Exception as exc:  # a view, or a table format without versions: read it as it is
        log.debug("events.table %s has no Delta version: %s", name, exc)
    frame = spark.sql(f"SELECT * FROM {name} VERSION AS OF {version}") if version is not None else spark.table(name)
    return SourceEvents(frame, version, f"table {name}" + (f" v{version}" if version is not None else ""))


def _table_location(spark: SparkSession, name: str) -> str:
    rows = spark.sql(f"DESCRIBE TABLE EXTENDED {name}").where(F.col("col_name") == "Location").collect()
    if not rows:
        raise ValueError(f"{name} has no location (a view)")
    return rows[0]["data_type"]


# --- a damaged Delta log -----------------------------------------------------------------------------

_LOG = "_delta_log"
_COMMIT = re.compile(r"^(\d{20})\.json$")
# Delta's own checksum of a version (not Hadoop's hidden `.name.crc` beside each local file).
_CHECKSUM = re.compile(r"^(\d{20})\.crc$")
_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint(\.\d+\.\d+)?\.parquet$")


def _versions(names: list[str], pattern: re.Pattern[str]) -> set[int]:
    return {int(match[1]) for match in map(pattern.match, names) if match}


def check_delta_log(spark: SparkSession, path: Location) -> None:
    """Refuse a Delta events table whose newest log entry is missing, empty or not JSON.

    Delta itself reads such a table without a word in two of these cases: a missing newest commit makes
    the previous version the newest, an empty one a commit that adds nothing, and either way that
    commit's events are gone. Garbage fails deep inside Delta without naming the file. The newest
    version is the largest among the commits, Delta's checksums and the checkpoints; its commit must be
    there and hold one JSON action per line."""
    log_dir = path / _LOG
    try:
        names = filesystem.list_names(spark, log_dir, "events.path")
    except filesystem.StorageError as exc:
        raise SourceError(str(exc)) from exc
    commits = _versions(names, _COMMIT)
    if not commits:
        return  # not a Delta table (or a log of checkpoints only): the read says so
    known = commits | _versions(names, _CHECKSUM) | _versions(names, _CHECKPOINT)
    newest = max(known)
    damaged = f"events table at {path} (events.path in config) has a damaged Delta log"
    if newest not in commits:
        raise SourceError(
            f"{damaged}: its newest entry {log_dir / f'{newest:020d}.json'} is missing, but other files of version "
            f"{newest} are there ({', '.join(n for n in names if n.startswith(f'{newest:020d}.'))}); Delta would "
            f"read version {max(commits)} and silently lose the events of the versions after it. Put back an "
            "intact copy of the file; nothing was read or written."
        )
    problem = _commit_problem(spark, log_dir / f"{newest:020d}.json")
    if problem is not None:
        raise SourceError(
            f"{damaged}: its newest entry {log_dir / f'{newest:020d}.json'} {problem}, as a truncated or "
            "overwritten file is; Delta would fail on it or lose the events it adds. Put back an intact copy of "
            "the file; nothing was read or written."
        )


def _commit_problem(spark: SparkSession, commit: Location) -> str | None:
    """What is wrong with a commit file (empty, a line that is not a JSON object), else None."""
    try:
        text = filesystem.read_bytes(spark, commit, "events.path").decode("utf-8", errors="replace")
    except filesystem.StorageError as exc:
        raise SourceError(str(exc)) from exc
    if not text.strip():
        return "is empty"
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            action = json.loads(line)
        except ValueError as exc:
            if isinstance(exc, json.JSONDecodeError):
                return f"is not valid JSON (line {number}, column {exc.colno}: {exc.msg.removesuffix(' at')})"
            return f"is not valid JSON (line {number}: {exc})"
        if not isinstance(action, dict):
            return f"holds no Delta action at line {number}"
    return None


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- damaged files --------------------------------------------------------------------------------

# Spark's error condition for a data file it could not read (truncated, not Parquet, a checksum that does
# not match, gone); its `path` parameter names the file.
_FAILED_READ = "FAILED_READ_FILE"
_MISSING_FILE = "FAILED_READ_FILE.FILE_NOT_EXIST"
# A cause chain longer than this is a loop in the JVM's exceptions, not a deeper cause.
_MAX_CAUSES = 32


@dataclass(frozen=True)
class JavaFailure:
    """One exception of a Spark failure's cause chain: its error condition, parameters and first line."""
    condition: str | None
    parameters: dict[str, str] = field(default_factory=dict)
    text: str = ""


def java_failures(exc: BaseException) -> list[JavaFailure]:
    """The JVM exception behind a PySpark error and its causes, outermost first; [] for a Python error.

    A failed action raises one wrapper ("Job aborted due to stage failure"); the condition and the
    file name sit on a cause further down, so the whole chain is read."""
    java = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    gateway, jvm = SparkContext._gateway, SparkContext._jvm
    failures: list[JavaFailure] = []
    try:
        while java is not None and gateway is not None and len(failures) < _MAX_CAUSES:
            condition, parameters = None, {}
            if is_instance_of(gateway, java, "org.apache.spark.SparkThrowable"):
                condition = jvm.PythonErrorUtils.getCondition(java)
                parameters = dict(jvm.PythonErrorUtils.getMessageParameters(java) or {})
            lines = [line.strip() for line in str(java.toString()).splitlines() if line.strip()]
            failures.append(JavaFailure(condition, parameters, lines[0][:400] if lines else ""))
            cause = java.getCause()
            java = None if cause is None or cause.equals(java) else cause
    except Py4JError:  # the JVM went away mid-walk: what was read so far, and the caller's error stands
        pass
    return failures


def _spark_path(text: str) -> Location:
    """Spark spells local files `file:/x` or `file:///x`; a Location is the plain path."""
    return Location.parse(re.sub(r"^file:(//)?(?=/)", "", text))


def _within(root: Location, candidate: Location) -> bool:
    return candidate == root or root.contains(candidate)


def damaged_file_error(exc: BaseException, events: EventsConfig) -> SourceError | None:
    """A SourceError naming the events file Spark could not read, when that is what `exc` is; else None
    (another failure, or a file outside events.path: that is not the source's damage to report)."""
    failures = java_failures(exc)
    failed = next((f for f in failures if (f.condition or "").startswith(_FAILED_READ) and "path" in f.parameters),
                  None)
    if failed is None or events.path is None:
        return None
    file = _spark_path(failed.parameters["path"])
    if not _within(events.path, file):
        return None
    # The innermost cause is the reader's own words ("is not a Parquet file", "Unexpected end-of-input").
    cause = _short(failures[-1].text if failures[-1] is not failed else failed.text, 300)
    stopped = "the job stopped before writing the days it was reading"
    if file.parent.name == _LOG:
        return SourceError(
            f"events table at {events.path} (events.path in config) has a damaged Delta log: {file} cannot be "
            f"read ({cause}). Put back an intact copy of it; {stopped}."
        )
    where = (f"events.path {events.path} in config" if file == events.path
             else f"under events.path {events.path} in config")
    if failed.condition == _MISSING_FILE:
        return SourceError(
            f"events file {file} ({where}, format {events.format}) is missing: the table lists it but it is gone. "
            f"Put it back, or restore the table to a version without it; {stopped}."
        )
    remedy = ("or restore the table to a version before the file was added" if events.format == "delta"
              else "or move it out of the folder, if its events may be lost")
    return SourceError(
        f"events file {file} ({where}, format {events.format}) cannot be read, it is damaged or truncated: "
        f"{cause}. Put back an intact copy ({remedy}); {stopped}, and no file is skipped silently."
    )


@contextmanager
def damaged_files_named(events: EventsConfig) -> Iterator[None]:
    """Spark reads lazily: a damaged source file fails whatever action first touches it (a count, a
    write). Inside this block that failure becomes a SourceError naming the file; others pass unchanged."""
    try:
        yield
    except Exception as exc:
        damaged = damaged_file_error(exc, events)
        if damaged is None:
            raise
        raise damaged from exc


# --- JDBC ------------------------------------------------------------------------------------------


def _credentials(events: EventsConfig) -> dict[str, str]:
    """The database user and password from the environment variables the config names."""
    found = {}
    for key, option in (("user_env", "user"), ("password_env", "password")):
        variable = getattr(events.jdbc, key)
        if variable is None:
            continue
        value = os.environ.get(variable)
        if value is None:
            raise SourceError(f"events.jdbc.{key} names the environment variable {variable}, which is not set: "
                              f"export it with the database {option} (the config never holds it)")
        found[option] = value
    return found


def describe_jdbc(events: EventsConfig) -> str:
    """'jdbc postgresql://host:5432/db table public.events': the URL without its parameters (which may
    hold tokens), and the table or 'query'."""
    url = re.sub(r"[?;].*$", "", (events.jdbc.url or "").removeprefix("jdbc:"))
    what = f"table {events.jdbc.table}" if events.jdbc.table else "query"
    return f"jdbc {url} {what}"


@contextmanager
def _quiet_bridge() -> Iterator[None]:
    """py4j logs every command it sends to the JVM at DEBUG, option values included: while the
    credentials cross, its loggers stay at INFO or above, so a DEBUG log never holds the password."""
    loggers = [logging.getLogger(name) for name in ("py4j", "py4j.clientserver", "py4j.java_gateway")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.INFO))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class _Scrubbed:
    """Replaces the secret values in text that may quote them (a driver's error message)."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.values = [v for v in secrets.values() if v]

    def __call__(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, "***")
        return text


def _first_line(exc: Exception) -> str:
    """The first line of the error, and of its root cause (the driver's own words: "password
    authentication failed for user ...", "relation ... does not exist"), without stack traces."""
    def line(text: str) -> str:
        lines = [part.strip() for part in text.strip().splitlines() if part.strip()]
        return lines[0][:300] if lines else ""

    java = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    if java is None:
        return line(str(exc)) or type(exc).__name__
    top, root = java, java
    while root.getCause() is not None and root.getCause() != root:
        root = root.getCause()
    first, cause = line(str(top.toString())), line(str(root.toString()))
    return first if root is top or cause == first else f"{first}; caused by {cause}"


def _read_jdbc(spark: SparkSession, events: EventsConfig, since: datetime | None,
               until: datetime | None) -> SourceEvents:
    jdbc, time_col = events.jdbc, events.columns.time_col
    description = describe_jdbc(events)
    secrets = _credentials(events)
    scrub = _Scrubbed(secrets)
    dbtable = jdbc.table or f"({jdbc.query}) events_query"

    def reader(**options: object) -> DataFrameReader:
        read = spark.read.format("jdbc").option("url", jdbc.url).option("fetchsize", jdbc.fetch_size)
        read = read.option("driver", jdbc.driver or jdbc_driver(jdbc.url))
        # timestamp without time zone is zone-less: read it as timestamp_ntz, so events.source_timezone
        # applies to it (and is refused for timestamptz, which Spark reads as a zone-aware timestamp).
        read = read.option("preferTimestampNTZ", True)
        for key, value in {**secrets, **options}.items():
            read = read.option(key, value)
        return read

    def failed(exc: Exception) -> SourceError:
        reason = scrub(_first_line(exc))
        hint = ""
        if "No suitable driver" in reason or "ClassNotFoundException" in reason:
            hint = (f"; the JDBC driver is not on the classpath: add it to spark.extra_packages "
                    f"(PostgreSQL: {POSTGRES_DRIVER})")
        return SourceError(f"cannot read events from {description} (events.jdbc.url in config): {reason}{hint}")

    with _quiet_bridge():  # the credentials are among the reader's options
        try:
            probe = reader(dbtable=dbtable).load()  # the schema only: the database runs the query WHERE 1=0
            kind = next((f.dataType for f in probe.schema.fields if f.name == time_col), None)
            partitionable = isinstance(kind, (T.TimestampType, T.TimestampNTZType, T.DateType, *_NUMERIC))
            if not partitionable:  # text times (or no time column: conform says so): one plain read
                return SourceEvents(probe, None, description)
            window = _window_bounds(kind, events.time_unit, since, until)
            bounds = _min_max(reader, spark, dbtable, time_col, jdbc.url, kind) if None in window else (None, None)
            low = window[0] if window[0] is not None else bounds[0]
            high = window[1] if window[1] is not None else bounds[1]
            if low is None or high is None:  # an empty table: nothing to split
                return SourceEvents(probe, None, description)
            if isinstance(kind, T.TimestampNTZType):
                # Spark cannot split on a timestamp_ntz column itself: the same ranges as WHERE predicates.
                frame = reader(dbtable=dbtable).load() if jdbc.num_partitions == 1 else _read_predicates(
                    spark, events, secrets, dbtable, _quoted(spark, jdbc.url, time_col), low, high)
            else:
                frame = reader(dbtable=dbtable, partitionColumn=time_col, lowerBound=low, upperBound=high,
                               numPartitions=jdbc.num_partitions).load()
        except SourceError:
            raise
        except Exception as exc:
            raise failed(exc) from exc
    # Pushed down into the database's WHERE; the partition bounds only split the read.
    frame = _where_window(frame, time_col, kind, window)
    log.info("events from %s: %d partitions on %s between %s and %s", description, jdbc.num_partitions, time_col,
             low, high)
    return SourceEvents(frame, None, description)


def _window_bounds(kind: T.DataType, time_unit: str | None, since: datetime | None,
                   until: datetime | None) -> tuple[str | None, str | None]:
    """The window widened by a day each side, as bounds in the time column's own terms."""
    def one(moment: datetime | None, shift: timedelta) -> str | None:
        if moment is None:
            return None
        moment = moment + shift
        if isinstance(kind, T.DateType):
            return moment.date().isoformat()
        if isinstance(kind, _NUMERIC):
            seconds = int(moment.timestamp())
            return str(seconds * 1000 if time_unit == "milliseconds" else seconds)
        return moment.strftime("%Y-%m-%d %H:%M:%S")  # read in the session zone, which is UTC
    return one(since, -_SLACK), one(until, _SLACK)


def _where_window(frame: DataFrame, time_col: str, kind: T.DataType,
                  window: tuple[str | None, str | None]) -> DataFrame:
    column = F.col(f"`{time_col}`")

    def literal(bound: str) -> Column:
        if isinstance(kind, T.DateType):
            return F.lit(date.fromisoformat(bound))
        if isinstance(kind, _NUMERIC):
            return F.lit(int(bound))
        return F.lit(bound).cast(kind)
    low, high = window
    if low is not None:
        frame = frame.where(column >= literal(low))
    if high is not None:
        frame = frame.where(column < literal(high))
    return frame


def _quoted(spark: SparkSession, url: str, column: str) -> str:
    """A column name quoted the way the URL's database wants it (Spark's JDBC dialect)."""
    return str(spark.sparkContext._jvm.org.apache.spark.sql.jdbc.JdbcDialects.get(url).quoteIdentifier(column))


def _read_predicates(spark: SparkSession, events: EventsConfig, secrets: dict[str, str], dbtable: str,
                     quoted: str, low: str, high: str) -> DataFrame:
    """`num_partitions` reads of equal time ranges; rows without a time go with the first (to be
    quarantined), rows past `high` with the last."""
    jdbc = events.jdbc
    start, end = datetime.fromisoformat(low), datetime.fromisoformat(high)
    step = max((end - start) / jdbc.num_partitions, timedelta(microseconds=1))
    cuts = [f"TIMESTAMP '{start + step * i:%Y-%m-%d %H:%M:%S.%f}'" for i in range(1, jdbc.num_partitions)]
    predicates = [f"{quoted} < {cuts[0]} OR {quoted} IS NULL"]
    predicates += [f"{quoted} >= {a} AND {quoted} < {b}" for a, b in itertools.pairwise(cuts)]
    predicates.append(f"{quoted} >= {cuts[-1]}")
    properties = {"driver": jdbc.driver or jdbc_driver(jdbc.url), "fetchsize": str(jdbc.fetch_size),
                  "preferTimestampNTZ": "true", **secrets}
    return spark.read.jdbc(jdbc.url, dbtable, predicates=predicates, properties=properties)


def _min_max(reader, spark: SparkSession, dbtable: str, time_col: str, url: str,
             kind: T.DataType) -> tuple[str | None, str | None]:
    """The time column's range, from one aggregate query the database answers (not a read of the rows)."""
    quoted = _quoted(spark, url, time_col)
    row = reader(query=f"SELECT MIN({quoted}) AS lo, MAX({quoted}) AS hi FROM {dbtable}").load()
    if isinstance(kind, _NUMERIC):  # integral bounds around fractional epochs
        row = row.select(F.floor("lo").cast("string").alias("lo"), F.ceil("hi").cast("string").alias("hi"))
    else:  # timestamps as text in the session zone (UTC), which is how Spark reads the bounds back
        row = row.select(F.col("lo").cast("string").alias("lo"), F.col("hi").cast("string").alias("hi"))
    first = row.first()
    return (first["lo"], first["hi"]) if first else (None, None)
