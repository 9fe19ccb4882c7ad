"""The events contract: mapping a source onto it, and splitting rows into valid and quarantined.

`conform` is the only place that knows source column names and the source time zone; after it,
every frame has the contract columns (plus whatever extra columns the source carried).
`validate` is pure and lazy except for one small aggregate (the counts per reason).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segments_lib.config import EventColumns, EventsConfig

CONTRACT_COLUMNS = ("user_id", "event_name", "event_time", "event_value", "event_date")
USER_ID, EVENT_NAME, EVENT_TIME, EVENT_VALUE, EVENT_DATE = CONTRACT_COLUMNS

EVENT_SCHEMA = T.StructType([
    T.StructField(USER_ID, T.StringType(), nullable=True),
    T.StructField(EVENT_NAME, T.StringType(), nullable=True),
    T.StructField(EVENT_TIME, T.TimestampType(), nullable=True),
    T.StructField(EVENT_VALUE, T.DoubleType(), nullable=True),
    T.StructField(EVENT_DATE, T.DateType(), nullable=True),
])

REASON = "reason"
RUN_DATE = "run_date"
# Why a row is quarantined, in the order `_reason` checks them (a row gets the first that applies).
REASONS = ("null_user_id", "null_event_name", "null_event_time", "future_event", "negative_value")
NULL_USER_ID, NULL_EVENT_NAME, NULL_EVENT_TIME, FUTURE_EVENT, NEGATIVE_VALUE = REASONS
DUPLICATES_REMOVED = "duplicates_removed"

_NUMERIC = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)
_INTEGRAL = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.DecimalType)
# Source types each contract column accepts. Strings are parsed with try_cast, so a value that does not
# parse becomes null and is quarantined with a null_* reason instead of failing the whole run.
_ACCEPTED: Mapping[str, tuple[type, ...]] = {
    USER_ID: (T.StringType, *_INTEGRAL),
    EVENT_NAME: (T.StringType,),
    EVENT_TIME: (T.TimestampType, T.TimestampNTZType, T.DateType, T.StringType),
    EVENT_VALUE: (*_NUMERIC, T.StringType),
}
_EXPECTED_TEXT = {
    USER_ID: "string (or an integer id)",
    EVENT_NAME: "string",
    EVENT_TIME: "timestamp (or timestamp_ntz, date, or a parseable string)",
    EVENT_VALUE: "double (or any numeric, or a parseable string)",
}
_MICROS_PER_DAY = 86_400 * 1_000_000


class EventSchemaError(ValueError):
    """A source lacks a required column or has one of a type that cannot become the contract type."""


class TooManyRejectedError(RuntimeError):
    """More rows were quarantined than the configured share allows; the message gives counts per reason."""


def utc_date(ts: Column) -> Column:
    """Calendar date of a timestamp in UTC, whatever the session time zone is."""
    return F.date_from_unix_date(F.floor(F.unix_micros(ts) / F.lit(_MICROS_PER_DAY)).cast("int"))


def _source_type(df: DataFrame, name: str) -> T.DataType | None:
    return next((f.dataType for f in df.schema.fields if f.name == name), None)


def _check_type(contract_col: str, source_col: str, found: T.DataType) -> None:
    if not isinstance(found, _ACCEPTED[contract_col]):
        raise EventSchemaError(
            f"events column '{source_col}' (mapped to '{contract_col}') has type {found.simpleString()}; "
            f"expected {_EXPECTED_TEXT[contract_col]}"
        )


def _as_utc_timestamp(col: Column, found: T.DataType, source_timezone: str) -> Column:
    ts = col.try_cast(T.TimestampType()) if isinstance(found, T.StringType) else col.cast(T.TimestampType())
    if source_timezone.upper() in ("UTC", "Z", "ETC/UTC", "GMT"):
        return ts
    # Source times are wall-clock times in source_timezone without an offset; read them as such.
    return F.to_utc_timestamp(ts, source_timezone)


def conform(df: DataFrame, columns: EventColumns, source_timezone: str) -> DataFrame:
    """Map source columns onto the events contract: names, types, UTC times and `event_date`.

    User, event and time columns are required; a missing value column gives null values (a source
    without amounts is still a valid source). Other source columns are carried along after the
    contract columns. Raises `EventSchemaError` before anything is computed or written.
    """
    mapping = {USER_ID: columns.user_col, EVENT_NAME: columns.event_col, EVENT_TIME: columns.time_col,
               EVENT_VALUE: columns.value_col}
    found: dict[str, T.DataType | None] = {}
    for contract_col, source_col in mapping.items():
        source_type = _source_type(df, source_col)
        if source_type is None and contract_col != EVENT_VALUE:
            raise EventSchemaError(
                f"events source lacks required column '{source_col}' (mapped to '{contract_col}', "
                f"expected {_EXPECTED_TEXT[contract_col]}); columns found: {', '.join(df.columns)}"
            )
        if source_type is not None:
            _check_type(contract_col, source_col, source_type)
        found[contract_col] = source_type

    def cast(contract_col: str, target: T.DataType) -> Column:
        source = F.col(f"`{mapping[contract_col]}`")
        return source.try_cast(target) if isinstance(found[contract_col], T.StringType) else source.cast(target)

    event_time = _as_utc_timestamp(F.col(f"`{columns.time_col}`"), found[EVENT_TIME], source_timezone)
    value = cast(EVENT_VALUE, T.DoubleType()) if found[EVENT_VALUE] is not None else F.lit(None).cast("double")
    mapped_sources = set(mapping.values())
    extras = [c for c in df.columns if c not in mapped_sources and c not in CONTRACT_COLUMNS]
    return df.select(
        cast(USER_ID, T.StringType()).alias(USER_ID),
        F.col(f"`{columns.event_col}`").alias(EVENT_NAME),
        event_time.alias(EVENT_TIME),
        value.alias(EVENT_VALUE),
        utc_date(event_time).alias(EVENT_DATE),
        *[F.col(f"`{c}`") for c in extras],
    )


@dataclass(frozen=True)
class ValidationRules:
    dedup_key: tuple[str, ...] = (USER_ID, EVENT_NAME, EVENT_TIME, EVENT_VALUE)
    allow_negative_values: bool = False
    max_rejected_share: float = 0.05

    @classmethod
    def from_config(cls, events: EventsConfig) -> ValidationRules:
        return cls(
            dedup_key=tuple(events.dedup_key),
            allow_negative_values=events.allow_negative_values,
            max_rejected_share=events.max_rejected_share,
        )


@dataclass(frozen=True)
class ValidationResult:
    valid: DataFrame  # contract columns only
    rejected: DataFrame  # the conformed row (with extra columns) + reason + run_date
    counts: dict[str, int]  # per reason, plus duplicates_removed, total, valid
    tagged: DataFrame | None = None  # every row with its reason and duplicate flag (persisted on request)

    @property
    def rejected_count(self) -> int:
        return sum(self.counts[r] for r in REASONS)


def _reason(as_of: datetime, rules: ValidationRules) -> Column:
    reason = (
        F.when(F.col(USER_ID).isNull(), F.lit(NULL_USER_ID))
        .when(F.col(EVENT_NAME).isNull(), F.lit(NULL_EVENT_NAME))
        .when(F.col(EVENT_TIME).isNull(), F.lit(NULL_EVENT_TIME))
        .when(F.col(EVENT_TIME) > F.lit(as_of), F.lit(FUTURE_EVENT))
    )
    if not rules.allow_negative_values:
        reason = reason.when(F.col(EVENT_VALUE) < 0, F.lit(NEGATIVE_VALUE))
    return reason


def _as_utc(as_of: datetime) -> datetime:
    # A naive as_of is taken to be UTC, as every time in the project is.
    return as_of.replace(tzinfo=timezone.utc) if as_of.tzinfo is None else as_of


def validate(df: DataFrame, as_of: datetime, rules: ValidationRules, run_date: date | None = None,
             storage_level: StorageLevel | None = None) -> ValidationResult:
    """Split conformed events into valid rows and quarantined rows with a reason.

    One `select` tags each row with its first failing reason and whether it repeats an earlier valid
    row on `rules.dedup_key`; the counts come from one aggregation over that tagged frame. Exact
    duplicates are removed from the valid rows and counted, not quarantined. The tagged frame is read
    more than once (counts, valid, rejected), and tagging sorts every event for the duplicate window:
    with `storage_level` it is persisted before the counts, so that sort runs once, and
    `ValidationResult.tagged` is what to unpersist when the valid rows are no longer needed.
    """
    missing = [c for c in (*CONTRACT_COLUMNS, *rules.dedup_key) if c not in df.columns]
    if missing:
        raise EventSchemaError(f"validate needs conformed events; missing columns: {', '.join(missing)}")
    as_of = _as_utc(as_of)
    run_date = run_date or as_of.date()
    is_valid = F.col(REASON).isNull()
    # Nulls fall into one partition, so rows equal on the key (nulls included) count as duplicates.
    dup_window = (
        Window.partitionBy(is_valid, *[F.col(c) for c in rules.dedup_key])
        .orderBy(*[F.col(c) for c in CONTRACT_COLUMNS])
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    tagged = df.select("*", _reason(as_of, rules).alias(REASON)).select(
        "*", (is_valid & (F.row_number().over(dup_window) > 1)).alias("_duplicate")
    )
    if storage_level is not None:
        tagged = tagged.persist(storage_level)
    aggregates = [F.count(F.lit(1)).alias("total"),
                  F.sum(F.col("_duplicate").cast("long")).alias(DUPLICATES_REMOVED)]
    aggregates += [F.sum((F.col(REASON) == r).cast("long")).alias(r) for r in REASONS]
    row = tagged.agg(*aggregates).first()
    counts = {name: int(row[name] or 0) for name in (*REASONS, DUPLICATES_REMOVED, "total")}
    counts["valid"] = counts["total"] - counts[DUPLICATES_REMOVED] - sum(counts[r] for r in REASONS)

    valid = tagged.where(is_valid & ~F.col("_duplicate")).select(*CONTRACT_COLUMNS)
    rejected = tagged.where(~is_valid).select(
        *[F.col(f"`{c}`") for c in df.columns], F.col(REASON), F.lit(run_date).cast("date").alias(RUN_DATE)
    )
    return ValidationResult(valid=valid, rejected=rejected, counts=counts, tagged=tagged)


def rejected_share(counts: Mapping[str, int]) -> float:
    total = counts.get("total", 0)
    return sum(counts.get(r, 0) for r in REASONS) / total if total else 0.0


def format_counts(counts: Mapping[str, int], order: Sequence[str] = (*REASONS, DUPLICATES_REMOVED)) -> str:
    return ", ".join(f"{name}={counts.get(name, 0)}" for name in order)


def check_rejected_share(result: ValidationResult, max_share: float) -> None:
    """Fail the run when the quarantined share of rows exceeds `max_share` (duplicates do not count)."""
    share = rejected_share(result.counts)
    if share > max_share:
        raise TooManyRejectedError(
            f"{result.rejected_count} of {result.counts['total']} events rejected ({share:.1%}), above the "
            f"allowed {max_share:.1%}; per reason: {format_counts(result.counts)}"
        )
