"""Any source in (issue 20, items 1 and 2): every `events.format`, the time rules of `conform`, the config
errors, and one night per format from the source to the membership table, PostgreSQL over JDBC included.

Expected times are worked out by hand: 2026-03-01 is winter time in Berlin (UTC+1) and New York
(UTC-5); 2026-03-01T10:00:00Z is 1772359200 s after the epoch (20513 days × 86400 + 36000).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pyspark.sql import DataFrame

from segments_lib.config import AppConfig, ConfigError, EventColumns
from segments_lib.intake.demo import generate_events
from segments_lib.intake.events import BAD_EVENT_VALUE, EventSchemaError, ValidationRules, conform, validate
from segments_lib.job.runner import JobError, read_source_events, run_job
from segments_lib.store import tables
from segments_lib.store.sources import POSTGRES_DRIVER, SourceError, read_events_source
from tests.conftest import make_config
from tests.support.frames import assert_rows_equal
from tests.support.postgres import READER, READER_PASSWORD, PostgresServer, postgres_server

UTC = timezone.utc
TEN_UTC = datetime(2026, 3, 1, 10, 0)  # what the session (UTC) shows for 2026-03-01T10:00:00Z
EPOCH_S = 1772359200  # 2026-03-01T10:00:00Z
TIME_COLUMNS = ("user_id", "event_time", "event_date")


def _strings(spark, values: list[str | None]) -> DataFrame:
    rows = [(f"u{i}", "Open App", v) for i, v in enumerate(values)]
    return spark.createDataFrame(rows, "user_id string, event_name string, event_time string")


# --- conform: the time rules -------------------------------------------------------------------------


def test_iso_strings_without_offset_are_read_in_source_timezone_and_offsets_are_honoured(spark) -> None:
    source = _strings(spark, ["2026-03-01 10:00", "2026-03-01T10:00:00+05:30", "2026-03-01T10:00:00Z",
                              "2026-03-01", "2026-03-01 00:30:00", "not a time"])
    out = conform(source, EventColumns(), "Europe/Berlin")
    assert_rows_equal(out, [
        ("u0", datetime(2026, 3, 1, 9, 0), date(2026, 3, 1)),  # Berlin 10:00 = 09:00 UTC
        ("u1", datetime(2026, 3, 1, 4, 30), date(2026, 3, 1)),  # its own +05:30 wins
        ("u2", TEN_UTC, date(2026, 3, 1)),  # its own Z wins
        ("u3", datetime(2026, 2, 28, 23, 0), date(2026, 2, 28)),  # a date: midnight in Berlin
        ("u4", datetime(2026, 2, 28, 23, 30), date(2026, 2, 28)),  # across midnight: the UTC date
        ("u5", None, None),  # quarantined as null_event_time by validate
    ], columns=TIME_COLUMNS)
    # Without a zone (the default), zone-less strings are UTC.
    assert_rows_equal(conform(_strings(spark, ["2026-03-01 10:00"]), EventColumns()),
                      [("u0", TEN_UTC, date(2026, 3, 1))], columns=TIME_COLUMNS)


def test_a_datetime_pattern_reads_text_times_in_the_source_zone(spark) -> None:
    source = _strings(spark, ["01/03/2026 10:00", "1/3/2026 5:00", "2026-03-01 10:00"])
    out = conform(source, EventColumns(), "America/New_York", time_format="d/M/yyyy H:mm")
    assert_rows_equal(out, [
        ("u0", datetime(2026, 3, 1, 15, 0), date(2026, 3, 1)),  # New York 10:00 EST = 15:00 UTC
        ("u1", datetime(2026, 3, 1, 10, 0), date(2026, 3, 1)),
        ("u2", None, None),  # does not fit the pattern: null, quarantined
    ], columns=TIME_COLUMNS)
    zoned = conform(_strings(spark, ["01.03.2026 10:00 +0100"]), EventColumns(), time_format="dd.MM.yyyy HH:mm Z")
    assert_rows_equal(zoned, [("u0", datetime(2026, 3, 1, 9, 0), date(2026, 3, 1))], columns=TIME_COLUMNS)


def test_epoch_seconds_and_milliseconds_numbers_and_text(spark) -> None:
    numbers = spark.createDataFrame([("u0", "Open App", EPOCH_S), ("u1", "Open App", 0)],
                                    "user_id string, event_name string, event_time long")
    assert_rows_equal(conform(numbers, EventColumns(), time_unit="seconds"), [
        ("u0", TEN_UTC, date(2026, 3, 1)), ("u1", datetime(1970, 1, 1), date(1970, 1, 1))], columns=TIME_COLUMNS)
    millis = spark.createDataFrame([("u0", "Open App", EPOCH_S * 1000 + 250)],
                                   "user_id string, event_name string, event_time long")
    assert_rows_equal(conform(millis, EventColumns(), time_unit="milliseconds"), [
        ("u0", TEN_UTC + timedelta(milliseconds=250), date(2026, 3, 1))], columns=TIME_COLUMNS)
    # CSV epochs are text; what is not a number, or lies past year 9999, is null (null_event_time).
    text = _strings(spark, [str(EPOCH_S), "1772359200.5", "soon", "99999999999999999"])
    assert_rows_equal(conform(text, EventColumns(), time_unit="seconds"), [
        ("u0", TEN_UTC, date(2026, 3, 1)), ("u1", TEN_UTC + timedelta(seconds=0.5), date(2026, 3, 1)),
        ("u2", None, None), ("u3", None, None)], columns=TIME_COLUMNS)


def test_numeric_time_without_time_unit_names_the_column_and_the_key(spark) -> None:
    numbers = spark.createDataFrame([("u0", "Open App", EPOCH_S)], "user_id string, event_name string, ts long")
    with pytest.raises(EventSchemaError, match=r"events column 'ts' \(mapped to 'event_time'\) holds numbers "
                                               r"\(bigint\): set events.time_unit to seconds or milliseconds"):
        conform(numbers, EventColumns(time_col="ts"))


def test_zone_aware_timestamp_with_source_timezone_names_the_column_and_the_key(spark) -> None:
    aware = spark.createDataFrame([("u0", "Open App", TEN_UTC)], "user_id string, event_name string, ts timestamp")
    with pytest.raises(EventSchemaError, match=r"events column 'ts' \(mapped to 'event_time'\) is a zone-aware "
                                               r"timestamp, but events.source_timezone is 'Europe/Berlin'"):
        conform(aware, EventColumns(time_col="ts"), "Europe/Berlin")
    # the default (null) keeps it as it is; a timestamp_ntz column takes the zone
    assert_rows_equal(conform(aware, EventColumns(time_col="ts")), [("u0", TEN_UTC, date(2026, 3, 1))],
                      columns=TIME_COLUMNS)
    naive = spark.createDataFrame([("u0", "Open App", TEN_UTC)], "user_id string, event_name string, ts timestamp_ntz")
    assert_rows_equal(conform(naive, EventColumns(time_col="ts"), "Europe/Berlin"),
                      [("u0", datetime(2026, 3, 1, 9, 0), date(2026, 3, 1))], columns=TIME_COLUMNS)


def test_value_col_null_means_no_values_and_bad_values_are_quarantined_with_a_reason(spark) -> None:
    source = spark.createDataFrame([("u0", "Buy", "2026-03-01 10:00", "12.5"), ("u1", "Buy", "2026-03-01 10:00", "x"),
                                    ("u2", "Buy", "2026-03-01 10:00", None), ("u3", "Buy", "2026-03-01 10:00", "NaN")],
                                   "user_id string, event_name string, event_time string, amount string")
    out = conform(source, EventColumns(value_col="amount"))
    result = validate(out, datetime(2026, 6, 1), ValidationRules())
    assert result.counts[BAD_EVENT_VALUE] == 2 and result.counts["valid"] == 2
    assert sorted((r.user_id, r.reason) for r in result.rejected.collect()) == [("u1", BAD_EVENT_VALUE),
                                                                                ("u3", BAD_EVENT_VALUE)]
    no_values = conform(source, EventColumns(value_col=None))
    assert [r.event_value for r in no_values.collect()] == [None] * 4
    assert "amount" in no_values.columns  # an unmapped column travels along as an extra
    with pytest.raises(EventSchemaError, match=r"lacks required column 'price'.*value_col: null"):
        conform(source, EventColumns(value_col="price"))


# --- config errors -----------------------------------------------------------------------------------


def _cfg(tmp_path: Path, **events: object) -> AppConfig:
    return make_config(tmp_path / "ws", events=events)


@pytest.mark.parametrize(("events", "message"), [
    ({"format": "xlsx"}, r"'events.format' must be one of delta, parquet, csv, json, table, jdbc, found 'xlsx'"),
    ({"format": "jsn"}, r"found 'jsn' \(did you mean 'json'\?\)"),
    ({"source_timezone": "Europe/Berlinn"}, r"'events.source_timezone' is not a known time zone: 'Europe/Berlinn' "
                                            r"\(did you mean 'Europe/Berlin'\?\)"),
    ({"source_timezone": "berlin"}, r"\(did you mean 'Europe/Berlin'\?\)"),
    ({"time_unit": "secs"}, r"'events.time_unit' must be seconds, milliseconds or null, found 'secs'"),
    ({"time_unit": "seconds", "source_timezone": "Europe/Berlin"},
     r"'events.source_timezone' is 'Europe/Berlin' but events.time_unit is set: epoch times are UTC"),
    ({"time_unit": "seconds", "time_format": "yyyy"}, r"set one of 'events.time_unit'.*and 'events.time_format'"),
    ({"time_format": "yyyy-MM-dd HH:mm XXX", "source_timezone": "Europe/Berlin"},
     r"events.time_format 'yyyy-MM-dd HH:mm XXX' reads a zone or offset"),
    ({"format": "table"}, r"events.format is table but 'events.table' is not set"),
    ({"format": "jdbc"}, r"events.format is jdbc but 'events.jdbc.url' is not set"),
    ({"format": "jdbc", "jdbc": {"url": "jdbc:postgresql://h/db"}},
     r"set exactly one of 'events.jdbc.table' and 'events.jdbc.query'"),
    ({"format": "jdbc", "jdbc": {"url": "jdbc:postgresql://h/db?user=a&password=b", "table": "t"}},
     r"'events.jdbc.url' must not hold credentials"),
    ({"jdbc": {"password_env": "hunter2!"}}, r"'events.jdbc.password_env' names an environment variable"),
    ({"csv": {"delimiter": ";;"}}, r"'events.csv.delimiter' must be one character"),
])
def test_config_errors_name_the_key(tmp_path: Path, events: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _cfg(tmp_path, **events)


def test_valid_zones_and_the_default(tmp_path: Path) -> None:
    assert _cfg(tmp_path).events.source_timezone is None  # zone-less values are UTC
    for zone in ("Europe/Berlin", "UTC", "+01:00", "America/Argentina/Buenos_Aires"):
        assert _cfg(tmp_path, source_timezone=zone).events.source_timezone == zone
    assert _cfg(tmp_path, columns={"value_col": None}).events.columns.value_col is None


# --- reading each format -----------------------------------------------------------------------------


def test_missing_sources_name_their_key(spark, tmp_path: Path) -> None:
    for fmt in ("delta", "parquet", "csv", "json"):
        cfg = _cfg(tmp_path, format=fmt, path="nowhere")
        with pytest.raises(SourceError, match=rf"no {fmt if fmt != 'delta' else 'Delta table'}.* at "
                                              rf"{cfg.events.path} \(events.path in config\)"):
            read_events_source(spark, cfg.events)
    cfg = _cfg(tmp_path, format="table", table="analytics_missing.events")
    with pytest.raises(JobError, match=r"no catalog table analytics_missing.events \(events.table in config\)"):
        read_source_events(spark, cfg)


def test_csv_and_json_are_read_as_written_and_narrowed_by_event_date(spark, tmp_path: Path) -> None:
    folder = tmp_path / "csv"
    for day, text in (("2026-03-01", 'user;event;ts;amount\nu1;"Buy; now";2026-03-01 10:00;3.5\n'),
                      ("2026-03-05", "user;event;ts;amount\nu2;Open;2026-03-05 10:00;\n")):
        (folder / f"event_date={day}").mkdir(parents=True)
        (folder / f"event_date={day}" / "part.csv").write_text(text)
    cfg = _cfg(tmp_path, format="csv", path=str(folder), csv={"delimiter": ";"})
    source = read_events_source(spark, cfg.events)
    assert source.version is None and source.description == f"csv at {folder}"
    assert sorted(tuple(r) for r in source.frame.select("user", "event", "ts", "amount").collect()) == [
        ("u1", "Buy; now", "2026-03-01 10:00", "3.5"), ("u2", "Open", "2026-03-05 10:00", None)]
    narrowed = read_events_source(spark, cfg.events, since=datetime(2026, 3, 4, tzinfo=UTC),
                                  until=datetime(2026, 3, 6, tzinfo=UTC))
    assert [r.user for r in narrowed.frame.collect()] == ["u2"]  # the 03-01 folder is pruned

    lines = tmp_path / "events.json"
    lines.write_text(json.dumps({"uid": 7, "what": "Open", "at": EPOCH_S}) + "\n{not json\n")
    cfg = _cfg(tmp_path, format="json", path=str(lines), time_unit="seconds",
               columns={"user_col": "uid", "event_col": "what", "time_col": "at", "value_col": None})
    raw = read_events_source(spark, cfg.events).frame
    result = validate(conform(raw, cfg.events.columns, time_unit="seconds"), datetime(2026, 6, 1),
                      ValidationRules())
    assert_rows_equal(result.valid, [("7", "Open", TEN_UTC, None)],
                      columns=("user_id", "event_name", "event_time", "event_value"))
    assert [r.reason for r in result.rejected.collect()] == ["null_user_id"]  # the broken line, quarantined


# --- one night per format, to the membership table ---------------------------------------------------

RUN_DATE = date(2026, 6, 1)
# One tiny segment at the low level. The champion is trained once, by the catalog table's night (the
# `reference` fixture); every other format's night scores with it from its own workspace (the tracking
# store is shared, the tables are not), so it costs a scoring night, not a training one, and must give
# exactly the reference's membership: the same events, whatever the format.
SEGMENTS = """
segments:
  - name: likely_to_purchase
    kind: conversion
    target: {occurs: {events: [Purchase Completed]}}
    past_window: 14d
    prediction_window: 7d
    precision_level: low
    eligible: {active_in: 14d}
    training: {snapshots: 2, stride: 7d, min_positives: 10, min_negatives: 10, retrain_every: 30d,
               gbt: {max_iter: 5, max_depth: 3}, search: []}
"""
NIGHT_STATUSES = ("ok", "precision_unreachable")  # both write the night's membership rows
Reference = tuple[AppConfig, list[tuple]]  # the reference night's config and membership rows


@pytest.fixture(scope="module")
def small_events() -> list[dict]:
    """400 demo users × 60 days ending on the run date (seed 5), ~18k events with whole-second times."""
    table = generate_events(users=400, days=60, end_date=RUN_DATE, seed=5)
    return table.select(["user_id", "event_name", "event_time", "event_value"]).to_pylist()


@pytest.fixture(scope="module")
def shared_tracking(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("sources-mlflow")
    return {"tracking_uri": f"sqlite:///{(root / 'mlflow.db').as_posix()}", "artifact_location": str(root / "art")}


def _night_config(tmp_path: Path, tracking: dict[str, str], spark_settings: dict | None = None,
                  **events: object) -> AppConfig:
    segments_file = tmp_path / "segments.yaml"
    segments_file.write_text(SEGMENTS)
    extra = {"spark": spark_settings} if spark_settings else {}
    return make_config(tmp_path / "ws", segments_file=str(segments_file), mlflow=tracking, events=events, **extra)


def _membership_night(spark, cfg: AppConfig) -> list[tuple]:
    """Run the night in process; its membership rows (segment, user, score, tier), sorted."""
    started = time.monotonic()
    assert run_job(cfg, [RUN_DATE], None, "auto") == 0
    logging.getLogger(__name__).warning("night on %s took %.1fs", cfg.events.format, time.monotonic() - started)
    runs = tables.read_delta(spark, tables.output_path(cfg, tables.SEGMENT_RUNS)).collect()
    assert [r.status for r in runs] in ([s] for s in NIGHT_STATUSES), [(r.segment, r.status, r.reason) for r in runs]
    membership = tables.read_delta(spark, tables.output_path(cfg, tables.SEGMENT_MEMBERSHIP))
    rows = sorted(tuple(r) for r in membership.where(f"run_date = DATE'{RUN_DATE}'").select(
        "segment", "user_id", "score", "precision_tier").collect())
    assert len(rows) > 100
    return rows


@pytest.fixture(scope="module")
def reference(spark, small_events: list[dict], shared_tracking: dict[str, str],
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    """The night on the events as a catalog table (Delta, `sources_test.events`): it trains the shared
    champion, and its membership is what every other format's night must give."""
    root = tmp_path_factory.mktemp("catalog")
    frame = spark.createDataFrame(small_events, "user_id string, event_name string, event_time timestamp, "
                                                "event_value double")
    spark.sql(f"CREATE DATABASE IF NOT EXISTS sources_test LOCATION '{root / 'warehouse'}'")
    try:
        frame.write.format("delta").saveAsTable("sources_test.events")
        cfg = _night_config(root, shared_tracking, format="table", table="sources_test.events")
        yield cfg, _membership_night(spark, cfg)
    finally:
        spark.sql("DROP DATABASE IF EXISTS sources_test CASCADE")


def _instant(row: dict) -> datetime:
    moment = row["event_time"]
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _write_csv(rows: list[dict], path: Path, zone: str | None = None) -> None:
    """The demo events as a CSV export: times as wall-clock text in `zone` (None: ISO with a Z)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["customer", "action", "happened_at", "amount"])
        for row in rows:
            moment = _instant(row)
            text = (moment.astimezone(ZoneInfo(zone)).strftime("%d/%m/%Y %H:%M:%S") if zone
                    else moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
            writer.writerow([row["user_id"], row["event_name"], text,
                             "" if row["event_value"] is None else repr(row["event_value"])])


CSV_COLUMNS = {"user_col": "customer", "event_col": "action", "time_col": "happened_at", "value_col": "amount"}


def test_a_night_from_a_csv_export(spark, small_events: list[dict], reference: Reference,
                                   shared_tracking: dict[str, str], tmp_path: Path) -> None:
    # Berlin wall-clock text in a day-first pattern, read back into UTC by the config alone.
    _write_csv(small_events, tmp_path / "export" / "events.csv", zone="Europe/Berlin")
    cfg = _night_config(tmp_path, shared_tracking, format="csv", path=str(tmp_path / "export"),
                        columns=CSV_COLUMNS, time_format="dd/MM/yyyy HH:mm:ss", source_timezone="Europe/Berlin")
    assert _membership_night(spark, cfg) == reference[1]


def test_a_night_from_json_lines(spark, small_events: list[dict], reference: Reference,
                                 shared_tracking: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "export" / "events.jsonl"
    path.parent.mkdir(parents=True)
    with path.open("w") as out:
        for row in small_events:  # epoch milliseconds, as many trackers export them
            out.write(json.dumps({"user_id": row["user_id"], "event_name": row["event_name"],
                                  "ts_ms": round(_instant(row).timestamp() * 1000),
                                  "event_value": row["event_value"]}) + "\n")
    cfg = _night_config(tmp_path, shared_tracking, format="json", path=str(path), time_unit="milliseconds",
                        columns={"time_col": "ts_ms"})
    assert _membership_night(spark, cfg) == reference[1]


def test_a_night_from_a_catalog_table(spark, reference: Reference) -> None:
    cfg, membership = reference  # the night ran in the fixture: the other formats compare with it
    source = read_events_source(spark, cfg.events)
    assert (source.description, source.version) == ("table sources_test.events v0", 0)
    assert len({user for _, user, _, _ in membership}) == len(membership) > 100


# --- PostgreSQL over JDBC ----------------------------------------------------------------------------

USER_ENV, PASSWORD_ENV = "SEGMENTS_TEST_DB_USER", "SEGMENTS_TEST_DB_PASSWORD"


@pytest.fixture(scope="module")
def postgres(small_events: list[dict], tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A real PostgreSQL on loopback with the demo events in public.events (timestamptz) and a small
    zone-less table; stopped after this module."""
    folder = tmp_path_factory.mktemp("pg-load")
    with postgres_server() as server:
        server.psql("CREATE TABLE public.events (user_id text, event_name text, event_time timestamptz, "
                    "event_value double precision)")
        load = folder / "events.csv"
        with load.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["user_id", "event_name", "event_time", "event_value"])
            for row in small_events:
                moment = _instant(row)
                writer.writerow([row["user_id"], row["event_name"], moment.isoformat(),
                                 "" if row["event_value"] is None else repr(row["event_value"])])
        server.copy_csv("public.events", load, "user_id, event_name, event_time, event_value")
        server.psql("CREATE TABLE public.local_events (uid bigint, name text, at timestamp, epoch_s bigint); "
                    f"INSERT INTO public.local_events VALUES (1, 'Open App', '2026-03-01 10:00', {EPOCH_S}); "
                    f"GRANT SELECT ON public.events, public.local_events TO {READER}")
        yield server


@pytest.fixture()
def db_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(USER_ENV, READER)
    monkeypatch.setenv(PASSWORD_ENV, READER_PASSWORD)


def _jdbc_events(server: PostgresServer, **jdbc: object) -> dict:
    return {"format": "jdbc", "jdbc": {"url": server.jdbc_url, "user_env": USER_ENV, "password_env": PASSWORD_ENV,
                                       "num_partitions": 3, **jdbc}}


def test_the_session_has_the_postgres_driver_from_extra_packages(spark) -> None:
    jars = spark.sparkContext.getConf().get("spark.jars", "")
    assert "postgresql-42.7." in jars, jars
    assert POSTGRES_DRIVER.startswith("org.postgresql:postgresql:42.7.")


def test_jdbc_reads_partitioned_on_the_time_column_within_the_window(
        spark, postgres: PostgresServer, db_credentials: None, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    cfg = _cfg(tmp_path, **_jdbc_events(postgres, table="public.events"))
    with caplog.at_level(logging.DEBUG):  # py4j logs every JVM call at DEBUG: not the credentials, though
        whole = read_events_source(spark, cfg.events)
    assert "preferTimestampNTZ" not in caplog.text and READER_PASSWORD not in caplog.text
    assert whole.description == f"jdbc postgresql://127.0.0.1:{postgres.port}/analytics table public.events"
    assert whole.frame.rdd.getNumPartitions() == 3  # split between the column's min and max
    total = int(postgres.psql("SELECT count(*) FROM public.events"))
    assert whole.frame.count() == total
    since, until = datetime(2026, 5, 20, tzinfo=UTC), datetime(2026, 5, 25, tzinfo=UTC)
    window = read_events_source(spark, cfg.events, since=since, until=until)
    assert window.frame.rdd.getNumPartitions() == 3
    # a superset by at most a day each side, and never a row of the window missing
    expected = int(postgres.psql("SELECT count(*) FROM public.events WHERE event_time >= '2026-05-19T00:00Z' "
                                 "AND event_time < '2026-05-26T00:00Z'"))
    assert window.frame.count() == expected < total
    # a query instead of a table; zone-less `timestamp` columns are read as timestamp_ntz
    local = _cfg(tmp_path, source_timezone="Europe/Berlin", columns={"user_col": "uid", "event_col": "name",
                                                                     "time_col": "at", "value_col": None},
                 **_jdbc_events(postgres, query="SELECT uid, name, at FROM public.local_events"))
    raw = read_events_source(spark, local.events).frame
    assert_rows_equal(conform(raw, local.events.columns, "Europe/Berlin"),
                      [("1", datetime(2026, 3, 1, 9, 0), date(2026, 3, 1))], columns=TIME_COLUMNS)
    # timestamptz is zone-aware: a source zone is refused, naming the column and the key
    aware = read_events_source(spark, cfg.events).frame
    with pytest.raises(EventSchemaError, match=r"'event_time'.*zone-aware.*events.source_timezone"):
        conform(aware, cfg.events.columns, "Europe/Berlin")


def test_jdbc_credentials_come_from_the_environment_only(spark, postgres: PostgresServer, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(tmp_path, **_jdbc_events(postgres, table="public.events"))
    monkeypatch.delenv(USER_ENV, raising=False)
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(SourceError, match=rf"events.jdbc.user_env names the environment variable {USER_ENV}, "
                                          "which is not set"):
        read_events_source(spark, cfg.events)
    monkeypatch.setenv(USER_ENV, READER)
    monkeypatch.setenv(PASSWORD_ENV, "wrong-password-a8c2")
    with pytest.raises(SourceError) as caught:
        read_events_source(spark, cfg.events)
    message = str(caught.value)
    assert "events.jdbc.url" in message and "password authentication failed" in message
    assert "wrong-password-a8c2" not in message
    missing = _cfg(tmp_path, **_jdbc_events(postgres, table="public.nothing_here"))
    monkeypatch.setenv(PASSWORD_ENV, READER_PASSWORD)
    with pytest.raises(SourceError, match=r"cannot read events from jdbc .* table public.nothing_here "
                                          r"\(events.jdbc.url in config\)"):
        read_events_source(spark, missing.events)


def test_a_night_from_postgresql_and_the_password_is_nowhere(
        spark, postgres: PostgresServer, db_credentials: None, reference: Reference,
        shared_tracking: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The one night needing the JDBC driver runs in process: the session fixture resolves the driver
    # once with Delta (tests/conftest.py), a second or two, where a subprocess night would pay a new
    # JVM, a session and its own resolution (tens of seconds).
    cfg = _night_config(tmp_path, shared_tracking, {"extra_packages": [POSTGRES_DRIVER]},
                        **_jdbc_events(postgres, table="public.events"))
    capsys.readouterr()
    with caplog.at_level(logging.DEBUG):
        assert _membership_night(spark, cfg) == reference[1]
    seen = caplog.text + "".join(capsys.readouterr())
    assert "likely_to_purchase" in seen  # the summary was printed and captured
    for path in (*(tables.output_path(cfg, name) for name in tables.OUTPUT_TABLES), cfg.quarantine_path,
                 cfg.events.validated_path):
        if tables.is_delta_table(spark, path):
            seen += "\n".join(str(r) for r in tables.read_delta(spark, path).collect())
    assert tables.is_delta_table(spark, tables.output_path(cfg, tables.SEGMENT_RUNS))
    assert READER_PASSWORD not in seen
    assert READER_PASSWORD not in str(cfg)  # the config holds only the variables' names
