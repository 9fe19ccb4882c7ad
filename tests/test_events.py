"""Events contract: conform (mapping, types, time zones) and validate (quarantine reasons, duplicates, share)."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from pyspark.sql import types as T

from segments_lib.config import EventColumns
from segments_lib.intake.events import (
    EVENT_SCHEMA,
    EventSchemaError,
    TooManyRejectedError,
    ValidationRules,
    check_rejected_share,
    conform,
    validate,
)
from tests.conftest import make_config
from tests.support.frames import assert_rows_equal

AS_OF = datetime(2026, 6, 1, 0, 0)
RAW_SCHEMA = T.StructType([
    T.StructField("user_id", T.StringType()),
    T.StructField("event_name", T.StringType()),
    T.StructField("event_time", T.TimestampType()),
    T.StructField("event_value", T.DoubleType()),
])


def _events(spark, rows):
    return conform(spark.createDataFrame(rows, RAW_SCHEMA), EventColumns())


VALID_COLUMNS = ("user_id", "event_name", "event_time", "event_value")


def test_conform_maps_columns_converts_london_time_to_utc_and_keeps_extras(spark) -> None:
    schema = T.StructType([
        T.StructField("external_id", T.LongType()),
        T.StructField("action", T.StringType()),
        T.StructField("ts", T.TimestampNTZType()),  # wall-clock London times, no zone
        T.StructField("amount", T.IntegerType()),
        T.StructField("country", T.StringType()),
    ])
    source = spark.createDataFrame([
        (17850, "Purchase Completed", datetime(2011, 6, 1, 12, 0), 15, "United Kingdom"),  # BST, UTC+1
        (17851, "Open App", datetime(2011, 1, 10, 0, 30), None, "France"),  # GMT, UTC+0
    ], schema)
    columns = EventColumns(user_col="external_id", event_col="action", time_col="ts", value_col="amount")

    out = conform(source, columns, "Europe/London")

    assert out.columns == ["user_id", "event_name", "event_time", "event_value", "event_date", "country"]
    assert [f.dataType for f in out.schema.fields][:5] == [f.dataType for f in EVENT_SCHEMA.fields]
    assert_rows_equal(out, [
        ("17850", "Purchase Completed", datetime(2011, 6, 1, 11, 0), 15.0, date(2011, 6, 1), "United Kingdom"),
        ("17851", "Open App", datetime(2011, 1, 10, 0, 30), None, date(2011, 1, 10), "France"),
    ], columns=("user_id", "event_name", "event_time", "event_value", "event_date", "country"))


def test_conform_derives_event_date_in_utc_across_midnight(spark) -> None:
    schema = T.StructType([T.StructField(c, T.StringType()) for c in ("user_id", "event_name", "event_time")])
    # 00:30 in Paris (summer, UTC+2) is 22:30 UTC the day before; a bad string becomes null, not a crash.
    source = spark.createDataFrame([("u1", "Open App", "2026-05-02 00:30:00"), ("u2", "Open App", "yesterday")],
                                   schema)
    out = conform(source, EventColumns(), "Europe/Paris")
    assert_rows_equal(out, [
        ("u1", datetime(2026, 5, 1, 22, 30), date(2026, 5, 1), None),
        ("u2", None, None, None),
    ], columns=("user_id", "event_time", "event_date", "event_value"))


def test_conform_missing_required_column_names_column_and_expected_type(spark) -> None:
    source = spark.createDataFrame([("u1", "Open App")], "user_id string, event_name string")
    with pytest.raises(EventSchemaError, match=r"lacks required column 'ts' \(mapped to 'event_time', "
                                               r"expected timestamp"):
        conform(source, EventColumns(time_col="ts"))


def test_conform_uncastable_type_names_column_expected_and_found(spark) -> None:
    source = spark.createDataFrame([("u1", "Open App", True)], "user_id string, event_name string, event_time boolean")
    with pytest.raises(EventSchemaError, match=r"'event_time' \(mapped to 'event_time'\) has type boolean; "
                                               r"expected timestamp"):
        conform(source, EventColumns())
    arrays = spark.createDataFrame([(["u1"], "Open App", AS_OF)], "user_id array<string>, event_name string, "
                                                                   "event_time timestamp")
    with pytest.raises(EventSchemaError, match=r"'user_id'.*has type array<string>; expected string"):
        conform(arrays, EventColumns())


def test_validate_quarantines_each_null_key_column_future_and_negative_rows(spark) -> None:
    t = datetime(2026, 5, 31, 10, 0)
    events = _events(spark, [
        ("u1", "Open App", t, None),  # valid
        (None, "Open App", t, None),  # null_user_id
        ("u2", None, t, None),  # null_event_name
        ("u3", "Open App", None, None),  # null_event_time
        ("u4", "Open App", datetime(2026, 6, 1, 0, 0, 1), None),  # one second after as_of: future_event
        ("u5", "Open App", datetime(2026, 6, 1, 0, 0, 0), None),  # exactly as_of: valid
        ("u6", "Purchase Completed", t, -5.0),  # negative_value
        (None, None, None, -1.0),  # first reason wins: null_user_id
    ])
    result = validate(events, AS_OF, ValidationRules())

    assert result.counts == {"null_user_id": 2, "null_event_name": 1, "null_event_time": 1, "future_event": 1,
                             "negative_value": 1, "bad_event_value": 0, "duplicates_removed": 0, "total": 8,
                             "valid": 2}
    assert_rows_equal(result.valid, [("u1", "Open App", t, None), ("u5", "Open App", datetime(2026, 6, 1), None)],
                      columns=VALID_COLUMNS)
    assert result.valid.columns == ["user_id", "event_name", "event_time", "event_value", "event_date"]
    rejected = sorted((r.user_id or "-", r.reason, r.run_date) for r in result.rejected.collect())
    assert rejected == [
        ("-", "null_user_id", date(2026, 6, 1)), ("-", "null_user_id", date(2026, 6, 1)),
        ("u2", "null_event_name", date(2026, 6, 1)), ("u3", "null_event_time", date(2026, 6, 1)),
        ("u4", "future_event", date(2026, 6, 1)), ("u6", "negative_value", date(2026, 6, 1)),
    ]


def test_validate_allows_negative_values_when_config_allows(spark) -> None:
    t = datetime(2026, 5, 31, 10, 0)
    events = _events(spark, [("u1", "Transaction Made", t, -20.0), ("u2", "Transaction Made", t, 3.0)])
    result = validate(events, AS_OF, ValidationRules(allow_negative_values=True))
    assert result.counts["negative_value"] == 0 and result.counts["valid"] == 2
    assert_rows_equal(result.valid, [("u1", "Transaction Made", t, -20.0), ("u2", "Transaction Made", t, 3.0)],
                      columns=VALID_COLUMNS)


def test_validate_removes_exact_duplicates_on_configured_key_and_counts_them(spark) -> None:
    t = datetime(2026, 5, 31, 10, 0)
    rows = [
        ("u1", "Purchase Completed", t, 10.0),
        ("u1", "Purchase Completed", t, 10.0),  # duplicate
        ("u1", "Purchase Completed", t, 10.0),  # duplicate
        ("u1", "Purchase Completed", t, 12.0),  # differs in value
        ("u2", "Open App", t, None),
        ("u2", "Open App", t, None),  # duplicate with a null value
        (None, "Open App", t, None),  # rejected rows are quarantined, never collapsed
        (None, "Open App", t, None),
    ]
    result = validate(_events(spark, rows), AS_OF, ValidationRules())
    assert result.counts["duplicates_removed"] == 3
    assert result.counts["null_user_id"] == 2
    assert result.counts["valid"] == 3
    assert_rows_equal(result.valid, [("u1", "Purchase Completed", t, 10.0), ("u1", "Purchase Completed", t, 12.0),
                                     ("u2", "Open App", t, None)], columns=VALID_COLUMNS)

    # A key without event_value treats the 12.0 purchase as a duplicate of the 10.0 one.
    narrow = validate(_events(spark, rows), AS_OF, ValidationRules(dedup_key=("user_id", "event_name", "event_time")))
    assert narrow.counts["duplicates_removed"] == 4
    assert narrow.counts["valid"] == 2


def test_rejected_share_over_limit_fails_with_counts_per_reason(spark) -> None:
    t = datetime(2026, 5, 31, 10, 0)
    rows = [(f"u{i}", "Open App", t, None) for i in range(8)]
    rows += [(None, "Open App", t, None), ("u9", "Open App", datetime(2026, 7, 1), None)]
    result = validate(_events(spark, rows), AS_OF, ValidationRules())
    with pytest.raises(TooManyRejectedError, match=r"2 of 10 events rejected \(20.0%\), above the allowed 5.0%; "
                                                   r"per reason: null_user_id=1, null_event_name=0, "
                                                   r"null_event_time=0, future_event=1, negative_value=0, "
                                                   r"bad_event_value=0"):
        check_rejected_share(result, 0.05)
    check_rejected_share(result, 0.20)  # exactly at the limit passes


def test_extra_columns_carried_to_quarantine_and_rules_from_config(spark, tmp_path) -> None:
    schema = T.StructType([*RAW_SCHEMA.fields, T.StructField("invoice_no", T.StringType())])
    t = datetime(2026, 5, 31, 10, 0)
    source = spark.createDataFrame([("u1", "Open App", t, None, "A1"), (None, "Open App", t, None, "A2")], schema)
    result = validate(conform(source, EventColumns()), AS_OF, ValidationRules())
    assert [(r.invoice_no, r.reason) for r in result.rejected.collect()] == [("A2", "null_user_id")]
    assert result.rejected.columns[-3:] == ["invoice_no", "reason", "run_date"]

    cfg = make_config(tmp_path / "ws", events={"path": "tables/events", "allow_negative_values": True,
                                               "dedup_key": ["user_id", "event_time"], "max_rejected_share": 0.2})
    assert ValidationRules.from_config(cfg.events) == ValidationRules(("user_id", "event_time"), True, 0.2)
