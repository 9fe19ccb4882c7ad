"""The one module that knows table names and locations, and how Delta reads and writes are done.

Every write is atomic (one Delta commit) and idempotent: a night's rows are replaced with
`replaceWhere` on the partition values they belong to, so re-running a night gives the same table.
Concurrent writers to disjoint partitions are retried on Delta's optimistic-concurrency conflicts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import date, datetime

import pyarrow as pa
from delta.tables import DeltaTable
from deltalake import write_deltalake
from pyspark.sql import DataFrame, SparkSession

from segments_lib.config import AppConfig
from segments_lib.locations import Location
from segments_lib.store import filesystem

log = logging.getLogger(__name__)

EVENTS_QUARANTINE = "events_quarantine"
SEGMENT_FEATURES = "segment_features"
OUTPUT_TABLES = ("segment_membership", "segment_thresholds", "segment_runs", "segment_backtest", "segment_drift",
                 "segment_uplift_ledger")
(SEGMENT_MEMBERSHIP, SEGMENT_THRESHOLDS, SEGMENT_RUNS, SEGMENT_BACKTEST, SEGMENT_DRIFT,
 SEGMENT_UPLIFT_LEDGER) = OUTPUT_TABLES

# Output tables stay readable by delta-rs, DuckDB and Trino: no deletion vectors, no column mapping.
READER_FRIENDLY_PROPERTIES = {
    "delta.enableDeletionVectors": "false",
    "delta.appendOnly": "false",
}
# Membership also records its row-level changes (Change Data Feed), so a campaign tool's sync can read
# what a night changed instead of the whole table. Only membership: the feed costs a writer feature and,
# for row-level rewrites, extra files, and no one syncs the other tables row by row. Readers are not
# affected (the reader protocol stays 1), so delta-rs, DuckDB and Trino still read the table.
MEMBERSHIP_PROPERTIES = {**READER_FRIENDLY_PROPERTIES, "delta.enableChangeDataFeed": "true"}
TABLE_PROPERTIES: Mapping[str, Mapping[str, str]] = {SEGMENT_MEMBERSHIP: MEMBERSHIP_PROPERTIES}


def table_properties(table: str) -> Mapping[str, str]:
    """The Delta properties an output table is kept at (created with them, and set again if missing)."""
    return TABLE_PROPERTIES.get(table, READER_FRIENDLY_PROPERTIES)


class TableError(RuntimeError):
    """A table is missing, unreadable or unwritable; the message names the path."""


class UnsafePathError(ValueError):
    """A name would place a table outside the configured output location."""


def output_path(cfg: AppConfig, table: str) -> Location:
    """Location of an output table, refusing names that escape the output root (e.g. '../x'), on the
    local disk (symlinks followed) and in an object store alike."""
    root = cfg.output.root
    candidate = root / table
    if table in ("", ".") or not root.contains(candidate):
        raise UnsafePathError(f"table name {table!r} would write outside the output location {root}")
    return Location.parse(candidate.path.resolve()) if candidate.is_local else candidate


def ensure_output_root(spark: SparkSession, cfg: AppConfig) -> Location:
    """Create the output location if it is missing; one that cannot hold tables is a TableError naming it."""
    try:
        filesystem.ensure_writable_directory(spark, cfg.output.root, "output.root")
    except filesystem.StorageError as exc:
        raise TableError(str(exc)) from exc
    return cfg.output.root


def quarantine_path(cfg: AppConfig) -> Location:
    return cfg.quarantine_path


def events_path(cfg: AppConfig) -> Location:
    return cfg.events.path


def is_delta_table(spark: SparkSession, path: Location | str) -> bool:
    return DeltaTable.isDeltaTable(spark, str(path))


def read_delta(spark: SparkSession, path: Location | str, version: int | None = None) -> DataFrame:
    if not is_delta_table(spark, path):
        raise TableError(f"no Delta table at {path}")
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(str(path))


def delta_version(spark: SparkSession, path: Location | str) -> int | None:
    """Latest committed version of a Delta table, or None when there is no table."""
    if not is_delta_table(spark, path):
        return None
    row = DeltaTable.forPath(spark, str(path)).history(1).select("version").first()
    return int(row["version"]) if row else None


def _sql_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, datetime):
        return f"TIMESTAMP'{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"DATE'{value.isoformat()}'"
    text = str(value).replace("'", "''")
    return f"'{text}'"


def replace_where_clause(keys: Mapping[str, object]) -> str:
    """SQL predicate selecting exactly the rows of one (segment, date, ...) slice."""
    if not keys:
        raise ValueError("replace_partition needs at least one key to bound the overwrite")
    return " AND ".join(f"`{col}` = {_sql_literal(val)}" for col, val in sorted(keys.items()))


def _is_retryable_conflict(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return any(
        name in text
        for name in ("ConcurrentAppendException", "ConcurrentWriteException", "ProtocolChangedException",
                     "MetadataChangedException", "ConcurrentTransactionException", "DELTA_CONCURRENT")
    )


def with_conflict_retry(action, what: str, attempts: int = 6, base_delay_s: float = 0.5):
    """Run a Delta write, retrying optimistic-concurrency conflicts with backoff."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:
            if attempt == attempts or not _is_retryable_conflict(exc):
                raise
            delay = base_delay_s * 2 ** (attempt - 1)
            log.warning("%s: concurrent Delta commit (%s), retry %d in %.1fs",
                        what, type(exc).__name__, attempt, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def day_range_clause(column: str, first_day: date | None, end_day: date | None) -> str:
    """SQL predicate for `first_day ≤ column < end_day`; an open start also takes null days (rows whose
    time could not be read belong to no day, and only an import from the beginning sees them)."""
    parts = []
    if first_day is not None:
        parts.append(f"`{column}` >= {_sql_literal(first_day)}")
    if end_day is not None:
        upper = f"`{column}` < {_sql_literal(end_day)}"
        parts.append(upper if first_day is not None else f"({upper} OR `{column}` IS NULL)")
    return " AND ".join(parts) or "true"


def replace_partition(
    df: DataFrame,
    path: Location | str,
    keys: Mapping[str, object],
    partition_by: Sequence[str] = (),
    properties: Mapping[str, str] | None = None,
    description: str | None = None,
    merge_schema: bool = False,
) -> None:
    """Atomically replace the rows matching `keys` with `df` (creating the table if needed).

    Rows of `df` must all match `keys`; Delta enforces that with replaceWhere's constraint check.
    """
    replace_where(df, path, replace_where_clause(keys), partition_by, properties, description, merge_schema)


def replace_where(
    df: DataFrame,
    path: Location | str,
    predicate: str,
    partition_by: Sequence[str] = (),
    properties: Mapping[str, str] | None = None,
    description: str | None = None,
    merge_schema: bool = False,
    optimize_write: bool = False,
) -> None:
    """Atomically replace the rows matching the SQL `predicate` with `df` (creating the table if needed):
    one Delta commit, so a reader sees the old rows or the new ones, never a mix.

    `merge_schema` lets a newer release add columns to a table an older one created (additive only:
    a changed type still fails). `optimize_write` turns on Delta's optimized write: one shuffle on the
    partition columns that bins each partition's rows into files of a target size, so a partitioned
    table gets one file per small partition instead of one per partition per task."""
    path = str(path)
    spark = df.sparkSession
    if properties and is_delta_table(spark, path):
        # Before the write on a table an older release created: tonight's commit is then already in
        # the Change Data Feed. A no-op (one metadata read) once the properties are there.
        set_table_properties(spark, path, properties)

    def write() -> None:
        writer = df.write.format("delta").option("replaceWhere", predicate)
        if optimize_write:
            writer = writer.option("optimizeWrite", "true")
        if not is_delta_table(spark, path):
            writer = writer.mode("overwrite")
            if partition_by:
                writer = writer.partitionBy(*partition_by)
            if description:
                writer = writer.option("description", description)
            # `delta.*` writer options become table properties of the creating commit, so the first
            # night is already covered (the Change Data Feed starts at version 0), with no extra commit.
            for key, value in (properties or {}).items():
                writer = writer.option(key, value)
        else:
            writer = writer.mode("overwrite")
            if merge_schema:
                writer = writer.option("mergeSchema", "true")
        writer.save(path)

    try:
        with_conflict_retry(write, f"replace {predicate} in {path}")
    except Exception as exc:
        if _is_retryable_conflict(exc):
            raise
        if isinstance(exc, OSError) or "Permission denied" in str(exc) or "AccessDenied" in str(exc):
            raise TableError(f"cannot write Delta table at {path}: {exc}") from exc
        raise
    if properties:  # a table another writer created between the check and this write lacks them
        set_table_properties(spark, path, properties)


def set_table_properties(spark: SparkSession, path: Location | str, properties: Mapping[str, str]) -> None:
    current = {
        row["key"]: row["value"]
        for row in spark.sql(f"SHOW TBLPROPERTIES delta.`{path}`").collect()
    }
    missing = {k: v for k, v in properties.items() if current.get(k) != v}
    if missing:
        assignments = ", ".join(f"'{k}' = '{v}'" for k, v in missing.items())
        with_conflict_retry(
            lambda: spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({assignments})"),
            f"set properties on {path}",
        )


def append(df: DataFrame, path: Location | str, partition_by: Sequence[str] = ()) -> None:
    writer = df.write.format("delta").mode("append")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    with_conflict_retry(lambda: writer.save(str(path)), f"append to {path}")


def write_output(
    df: DataFrame,
    cfg: AppConfig,
    table: str,
    keys: Mapping[str, object],
    partition_by: Sequence[str] = (),
    description: str | None = None,
) -> Location:
    """Replace one (segment, date) slice of an output table, keeping it readable by non-Spark readers."""
    path = output_path(cfg, table)
    replace_partition(df, path, keys, partition_by, table_properties(table), description, merge_schema=True)
    return path


def read_output(spark: SparkSession, cfg: AppConfig, table: str) -> DataFrame | None:
    """An output table, or None when no night has written it yet."""
    path = output_path(cfg, table)
    return read_delta(spark, path) if is_delta_table(spark, path) else None


MEMBERSHIP_CURRENT_VIEW = "segment_membership_current"


def membership_current_sql(source: str) -> str:
    """The latest run of each segment: what a BI tool should read by default."""
    return (
        f"SELECT m.* FROM {source} m JOIN "
        f"(SELECT segment AS latest_segment, max(run_date) AS latest_run_date FROM {source} GROUP BY segment) l "
        "ON m.segment = l.latest_segment AND m.run_date = l.latest_run_date"
    )


def register_views(spark: SparkSession, cfg: AppConfig) -> list[str]:
    """Expose the output tables by name: session temp views, plus catalog tables when a database is configured."""
    registered: list[str] = []
    database = cfg.output.catalog_database
    if database:
        spark.sql(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    for table in OUTPUT_TABLES:
        path = output_path(cfg, table)
        if not is_delta_table(spark, path):
            continue
        spark.read.format("delta").load(str(path)).createOrReplaceTempView(table)
        registered.append(table)
        if database:
            spark.sql(f"CREATE TABLE IF NOT EXISTS `{database}`.`{table}` USING DELTA LOCATION '{path}'")
    if SEGMENT_MEMBERSHIP in registered:
        spark.sql(f"CREATE OR REPLACE TEMP VIEW {MEMBERSHIP_CURRENT_VIEW} AS "
                  f"{membership_current_sql(SEGMENT_MEMBERSHIP)}")
        if database:
            spark.sql(f"CREATE OR REPLACE VIEW `{database}`.`{MEMBERSHIP_CURRENT_VIEW}` AS "
                      f"{membership_current_sql(f'`{database}`.`{SEGMENT_MEMBERSHIP}`')}")
        registered.append(MEMBERSHIP_CURRENT_VIEW)
    return registered


DEMO_GROUND_TRUTH = "demo_ground_truth"


def write_arrow_delta(batches, path: Location | str, schema, partition_by: Sequence[str] = ()) -> None:
    """Replace a whole Delta table with Arrow record batches, streamed, without Spark (delta-rs).

    An object-store location takes its credentials and endpoint from the environment, as delta-rs does
    (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP` for a plain-HTTP test server, ...).

    Used for generated data (the demo events and their ground truth): the overwrite makes a re-run
    with the same seed give the same table. `batches` is any iterable of `pyarrow.RecordBatch`.
    """

    reader = pa.RecordBatchReader.from_batches(schema, iter(batches))
    try:
        target = path.for_arrow() if isinstance(path, Location) else str(path)
        write_deltalake(target, reader, partition_by=list(partition_by) or None, mode="overwrite",
                        schema_mode="overwrite")
    except OSError as exc:
        raise TableError(f"cannot write Delta table at {path}: {exc}") from exc


def overwrite_table(df: DataFrame, path: Location | str, partition_by: Sequence[str] = ()) -> None:
    """Replace a whole Delta table (data and schema) in one commit: a re-run gives the same table."""
    writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    with_conflict_retry(lambda: writer.save(str(path)), f"overwrite {path}")
