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

from segments_lib.config import EventColumns, EventsConfig, pattern_has_zone

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
# A time that does not parse is null after `conform`, hence null_event_time; a value that does not
# parse (or is NaN or infinite) is bad_event_value.
REASONS = ("null_user_id", "null_event_name", "null_event_time", "future_event", "negative_value",
           "bad_event_value")
NULL_USER_ID, NULL_EVENT_NAME, NULL_EVENT_TIME, FUTURE_EVENT, NEGATIVE_VALUE, BAD_EVENT_VALUE = REASONS
DUPLICATES_REMOVED = "duplicates_removed"

_NUMERIC = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)
_INTEGRAL = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.DecimalType)
# Source types each contract column accepts. Strings are parsed with try_cast, so a value that does not
# parse becomes null and is quarantined with a null_* reason instead of failing the whole run.
_ACCEPTED: Mapping[str, tuple[type, ...]] = {
    USER_ID: (T.StringType, *_INTEGRAL),
    EVENT_NAME: (T.StringType,),
    EVENT_TIME: (T.TimestampType, T.TimestampNTZType, T.DateType, T.StringType, *_NUMERIC),
    EVENT_VALUE: (*_NUMERIC, T.StringType),
}
_EXPECTED_TEXT = {
    USER_ID: "string (or an integer id)",
    EVENT_NAME: "string",
    EVENT_TIME: "timestamp (or timestamp_ntz, date, a parseable string, or epoch numbers with events.time_unit)",
    EVENT_VALUE: "double (or any numeric, or a parseable string)",
}
_MICROS_PER_DAY = 86_400 * 1_000_000
# Epoch numbers beyond year 9999 (either way) cannot be a timestamp: null (null_event_time), not an overflow.
_MAX_EPOCH_SECONDS = 253_402_300_799
# The end of a time string that names its own instant: Z, an offset (+01:00, -0500), UTC/GMT with or
# without an offset, or a region id (2026-03-01T10:00:00 Europe/Berlin). It must follow a clock time,
# so a date's "-01" is not taken for an offset.
_EXPLICIT_ZONE = (r"\d:\d{2}(:\d{2}(\.\d+)?)?\s*([zZ]|[+-]\d{1,2}(:?\d{2}){0,2}|(UTC|GMT|UT)([+-]\d{1,2}(:?\d{2})?)?"
                  r"|\[?[A-Za-z]+/[A-Za-z_+/-]+\]?)$")


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


@dataclass(frozen=True)
class TimeRules:
    """How the source's time column is read: `events.time_format`, `events.time_unit`,
    `events.source_timezone` (None: zone-less times are UTC)."""
    time_format: str | None = None
    time_unit: str | None = None
    source_timezone: str | None = None

    @classmethod
    def from_config(cls, events: EventsConfig) -> TimeRules:
        return cls(events.time_format, events.time_unit, events.source_timezone)


def _zone_less_to_utc(wall_clock: Column, source_timezone: str | None) -> Column:
    """A timestamp_ntz (a wall-clock time) read in `source_timezone` (None: UTC) → its UTC instant.

    convert_timezone moves the wall clock into the session's zone, where the cast to timestamp reads it:
    the result does not depend on the session time zone.
    """
    return F.convert_timezone(F.lit(source_timezone or "UTC"), F.current_timezone(), wall_clock).cast(
        T.TimestampType())


def _epoch_to_utc(col: Column, found: T.DataType, unit: str) -> Column:
    # Text epochs (CSV, JSON strings) parse as decimals; what does not parse, or lies beyond year 9999,
    # is null and quarantined as null_event_time.
    number = col.try_cast(T.DecimalType(38, 6)) if isinstance(found, T.StringType) else col.cast(
        T.DecimalType(38, 6))
    seconds = number / F.lit(1000) if unit == "milliseconds" else number
    in_range = F.abs(seconds) <= F.lit(_MAX_EPOCH_SECONDS)
    return F.when(in_range, F.timestamp_micros((seconds * F.lit(1_000_000)).cast(T.LongType())))


def _string_to_utc(col: Column, rules: TimeRules) -> Column:
    if rules.time_format is not None:
        parsed = F.try_to_timestamp(col, F.lit(rules.time_format))
        if pattern_has_zone(rules.time_format):
            return parsed  # the pattern reads the zone: each value names its instant
        # A zone-less pattern parses in the session zone; back to the wall clock, then to UTC.
        return _zone_less_to_utc(parsed.cast(T.TimestampNTZType()), rules.source_timezone)
    # ISO 8601. A value with its own offset or zone keeps it (the source said which instant it is);
    # source_timezone applies only to the values without one.
    explicit = F.trim(col).rlike(_EXPLICIT_ZONE)
    return F.when(explicit, col.try_cast(T.TimestampType())).otherwise(
        _zone_less_to_utc(col.try_cast(T.TimestampNTZType()), rules.source_timezone))


def _as_utc_timestamp(col: Column, source_col: str, found: T.DataType, rules: TimeRules) -> Column:
    """The source time column as a UTC timestamp, by its type and the time rules (docs/sources.md)."""
    is_numeric = isinstance(found, _NUMERIC)
    if is_numeric and rules.time_unit is None:
        raise EventSchemaError(
            f"events column '{source_col}' (mapped to 'event_time') holds numbers ({found.simpleString()}): "
            "set events.time_unit to seconds or milliseconds if they are epoch times")
    if rules.time_unit is not None:
        if not (is_numeric or isinstance(found, T.StringType)):
            raise EventSchemaError(
                f"events.time_unit is {rules.time_unit} but events column '{source_col}' (mapped to "
                f"'event_time') has type {found.simpleString()}, not epoch numbers: set events.time_unit to null")
        return _epoch_to_utc(col, found, rules.time_unit)
    if rules.time_format is not None and not isinstance(found, T.StringType):
        raise EventSchemaError(
            f"events.time_format is set but events column '{source_col}' (mapped to 'event_time') has type "
            f"{found.simpleString()}, not text: set events.time_format to null")
    if isinstance(found, T.TimestampType):
        if rules.source_timezone is not None:
            raise EventSchemaError(
                f"events column '{source_col}' (mapped to 'event_time') is a zone-aware timestamp, but "
                f"events.source_timezone is {rules.source_timezone!r}: it applies only to zone-less times "
                "(timestamp_ntz, date, text without an offset); set events.source_timezone to null")
        return col
    if isinstance(found, T.TimestampNTZType):
        return _zone_less_to_utc(col, rules.source_timezone)
    if isinstance(found, T.DateType):
        return _zone_less_to_utc(col.cast(T.TimestampNTZType()), rules.source_timezone)  # midnight there
    return _string_to_utc(col, rules)


def _value(col: Column, found: T.DataType | None) -> Column:
    if found is None:
        return F.lit(None).cast(T.DoubleType())
    if isinstance(found, T.StringType):
        parsed = col.try_cast(T.DoubleType())
        # Text that is not a number is a bad value, not an absent one: NaN here, bad_event_value in
        # validate (which also catches NaN and infinite numbers from numeric sources).
        return F.when(col.isNotNull() & parsed.isNull(), F.lit(float("nan"))).otherwise(parsed)
    return col.cast(T.DoubleType())


def conform(df: DataFrame, columns: EventColumns, source_timezone: str | None = None, *,
            time_format: str | None = None, time_unit: str | None = None) -> DataFrame:
    """Map source columns onto the events contract: names, types, UTC times and `event_date`.

    User, event and time columns are required. `columns.value_col` None means the source has no value
    column (event_value null); so does a source without a column of the default name `event_value`,
    while a value column named otherwise must exist. Times (docs/sources.md): zone-aware timestamps
    as they are; timestamp_ntz, dates and text without an offset in `source_timezone` (None: UTC);
    text with an offset keeps it; `time_format` parses text with a Spark datetime pattern;
    `time_unit` (seconds | milliseconds) reads epoch numbers. Other source columns are carried along
    after the contract columns. Raises `EventSchemaError` before anything is computed or written.
    """
    rules = TimeRules(time_format, time_unit, source_timezone)
    mapping = {USER_ID: columns.user_col, EVENT_NAME: columns.event_col, EVENT_TIME: columns.time_col,
               EVENT_VALUE: columns.value_col}
    found: dict[str, T.DataType | None] = {}
    for contract_col, source_col in mapping.items():
        source_type = _source_type(df, source_col) if source_col is not None else None
        optional = contract_col == EVENT_VALUE and source_col in (None, EventColumns().value_col)
        if source_type is None and not optional:
            extra = (" (events.columns.value_col: null if the source has no value column)"
                     if contract_col == EVENT_VALUE else "")
            raise EventSchemaError(
                f"events source lacks required column '{source_col}' (mapped to '{contract_col}', "
                f"expected {_EXPECTED_TEXT[contract_col]}){extra}; columns found: {', '.join(df.columns)}"
            )
        if source_type is not None:
            _check_type(contract_col, source_col, source_type)
        found[contract_col] = source_type

    def cast(contract_col: str, target: T.DataType) -> Column:
        source = F.col(f"`{mapping[contract_col]}`")
        return source.try_cast(target) if isinstance(found[contract_col], T.StringType) else source.cast(target)

    event_time = _as_utc_timestamp(F.col(f"`{columns.time_col}`"), columns.time_col, found[EVENT_TIME], rules)
    value = _value(F.col(f"`{columns.value_col}`") if found[EVENT_VALUE] else F.lit(None), found[EVENT_VALUE])
    mapped_sources = {c for c in mapping.values() if c is not None}
    extras = [c for c in df.columns if c not in mapped_sources and c not in CONTRACT_COLUMNS]
    return df.select(
        cast(USER_ID, T.StringType()).alias(USER_ID),
        F.col(f"`{columns.event_col}`").alias(EVENT_NAME),
        event_time.alias(EVENT_TIME),
        value.alias(EVENT_VALUE),
        utc_date(event_time).alias(EVENT_DATE),
        *[F.col(f"`{c}`") for c in extras],
    )


def conform_events(df: DataFrame, events: EventsConfig) -> DataFrame:
    """`conform` with every rule of the config's events section (columns, time format/unit, zone)."""
    return conform(df, events.columns, events.source_timezone, time_format=events.time_format,
                   time_unit=events.time_unit)


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
    bad_value = F.isnan(F.col(EVENT_VALUE)) | F.col(EVENT_VALUE).isin(float("inf"), float("-inf"))
    if not rules.allow_negative_values:
        # NaN sorts above every number in Spark, so a NaN is never "negative": bad_event_value below.
        reason = reason.when(F.col(EVENT_VALUE) < 0, F.lit(NEGATIVE_VALUE))
    return reason.when(bad_value, F.lit(BAD_EVENT_VALUE))


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
