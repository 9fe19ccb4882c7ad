"""The validated events table and its per-day profile: where the nightly reads its events from.

`events.validated_path` holds the events that passed validation, in the events contract, partitioned
by `event_date`. Beside it, `<validated_path>_days` holds one row per (event_date, event_name): how
many events, how many with a value, the first and last time. The profile answers "what does the whole
history look like" (first and last event, counts per event name: the dry run, the segment checks)
without scanning the events, and its newest day is where the next night's refresh starts.

Both tables are replaced per day range with `replaceWhere`, so importing the same days twice gives the
same tables, and an overlapping range replaces rows rather than adding them. The events are written
before the profile: a job killed in between leaves the profile one range behind, and because the next
refresh starts from the profile's newest day, it re-imports that range.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from segments_lib.config import AppConfig
from segments_lib.intake.events import CONTRACT_COLUMNS, EVENT_DATE, RUN_DATE
from segments_lib.language.windows import ReadWindow
from segments_lib.locations import Location
from segments_lib.store import tables

PROFILE_SUFFIX = "_days"
PROFILE_COLUMNS = ("event_date", "event_name", "n", "n_valued", "first_time", "last_time")


@dataclass(frozen=True)
class HistoryProfile:
    """The whole validated history in a few numbers, from the per-day profile."""
    first_time: datetime | None
    last_time: datetime | None
    event_counts: dict[str, int]
    first_day: date | None
    newest_day: date | None
    days: int  # days with at least one event


def events_location(cfg: AppConfig) -> Location:
    return cfg.events.validated_path


def profile_location(cfg: AppConfig) -> Location:
    """`<validated_path>_days`, beside the events table (not inside it: Delta's VACUUM owns that folder)."""
    path = cfg.events.validated_path
    return path.parent / f"{path.name}{PROFILE_SUFFIX}"


def day_profile(valid: DataFrame) -> DataFrame:
    """One row per (event_date, event_name) of validated events: count, valued count, first and last time."""
    return valid.groupBy(EVENT_DATE, "event_name").agg(
        F.count(F.lit(1)).alias("n"), F.count("event_value").alias("n_valued"),
        F.min("event_time").alias("first_time"), F.max("event_time").alias("last_time"),
    ).select(*PROFILE_COLUMNS)


def write_days(valid: DataFrame, cfg: AppConfig, first_day: date | None, end_day: date | None) -> None:
    """Replace the days [first_day, end_day) of the validated table and its profile with `valid`'s rows.

    An open bound replaces everything on that side. `valid` must be persisted by the caller when it is
    expensive: it is read twice, once per table.
    """
    predicate = tables.day_range_clause(EVENT_DATE, first_day, end_day)
    # Optimized write: each day's events in one file (or a few of Delta's target size) rather than one per
    # task, which made the demo's 100 days 400 files that every feature pass of the night opened.
    tables.replace_where(valid.select(*CONTRACT_COLUMNS), events_location(cfg), predicate,
                         partition_by=(EVENT_DATE,), optimize_write=True,
                         description="Validated events (events contract), partitioned by event_date.")
    tables.replace_where(day_profile(valid), profile_location(cfg), predicate,
                         description="Per (event_date, event_name): counts and first/last time of the "
                                     "validated events.")


def write_rejected(rejected: DataFrame, cfg: AppConfig, run_date: date, first_day: date | None,
                   end_day: date | None) -> None:
    """Replace the rejects of these days in the quarantine slice of `run_date`.

    Keyed by run date (as the nightly always was) and by the days this import validated, so re-running
    the same import, or a night that re-validates only its late days, replaces exactly the rows it
    produces again and leaves the slice's other days as they were.
    """
    predicate = (f"{tables.replace_where_clause({RUN_DATE: run_date})} AND "
                 f"{tables.day_range_clause(EVENT_DATE, first_day, end_day)}")
    tables.replace_where(rejected, tables.quarantine_path(cfg), predicate, partition_by=(RUN_DATE,))


def exists(spark: SparkSession, cfg: AppConfig) -> bool:
    return tables.is_delta_table(spark, profile_location(cfg)) and tables.is_delta_table(spark, events_location(cfg))


def read_profile(spark: SparkSession, cfg: AppConfig) -> HistoryProfile:
    """The profile of the whole validated history; every field empty when nothing was imported yet."""
    if not exists(spark, cfg):
        return HistoryProfile(None, None, {}, None, None, 0)
    profile = tables.read_delta(spark, profile_location(cfg))
    per_event = profile.groupBy("event_name").agg(
        F.sum("n").alias("n"), F.min("first_time").alias("first"), F.max("last_time").alias("last"),
        F.min(EVENT_DATE).alias("first_day"), F.max(EVENT_DATE).alias("newest_day"),
    ).collect()
    if not per_event:
        return HistoryProfile(None, None, {}, None, None, 0)
    days = profile.select(F.countDistinct(EVENT_DATE).alias("days")).first()["days"]
    return HistoryProfile(
        first_time=min(r["first"] for r in per_event),
        last_time=max(r["last"] for r in per_event),
        event_counts={r["event_name"]: int(r["n"]) for r in per_event},
        first_day=min(r["first_day"] for r in per_event),
        newest_day=max(r["newest_day"] for r in per_event),
        days=int(days),
    )


def read_events(spark: SparkSession, cfg: AppConfig) -> DataFrame:
    """The whole validated table, lazily: stages narrow it to their window (`in_window`)."""
    return tables.read_delta(spark, events_location(cfg))


def in_window(events: DataFrame, window: ReadWindow) -> DataFrame:
    """The events of `window`: the `event_date` bounds prune partitions (Delta reads only those days'
    files), the `event_time` bounds cut the first and last day exactly."""
    return events.where(
        (F.col(EVENT_DATE) >= F.lit(window.first_day)) & (F.col(EVENT_DATE) <= F.lit(window.last_day))
        & (F.col("event_time") >= F.lit(window.start)) & (F.col("event_time") < F.lit(window.end))
    )
