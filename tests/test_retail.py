"""Online Retail → events: invoice and line events, London time to UTC, and the mess quarantined."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from pyspark.sql import types as T

from segments_lib.config import PROJECT_ROOT
from segments_lib.intake import events, retail
from segments_lib.store import tables

SOURCE_SCHEMA = T.StructType([
    T.StructField("InvoiceNo", T.StringType()),
    T.StructField("StockCode", T.StringType()),
    T.StructField("Description", T.StringType()),
    T.StructField("Quantity", T.DoubleType()),
    T.StructField("InvoiceDate", T.TimestampType()),
    T.StructField("UnitPrice", T.DoubleType()),
    T.StructField("CustomerID", T.StringType()),
    T.StructField("Country", T.StringType()),
])
NOON = datetime(2011, 6, 1, 12, 0)  # London summer time: 11:00 UTC
WINTER = datetime(2011, 1, 5, 9, 30)  # London winter time = UTC
LINES = [
    ("536365", "A", "lantern", 2.0, NOON, 3.0, "17850", "United Kingdom"),
    ("536365", "B", "mug", 1.0, NOON, 4.5, "17850", "United Kingdom"),
    ("536365", "B", "mug", 1.0, NOON, 4.5, "17850", "United Kingdom"),  # duplicate line
    ("C536379", "B", "mug", -1.0, WINTER, 4.5, "17850", "United Kingdom"),  # cancellation
    ("536380", "D", "card", 3.0, WINTER, 1.0, None, "France"),  # no customer
    ("536381", "E", "sample", 5.0, WINTER, 0.0, "12000", "France"),  # zero price
]
AS_OF = datetime(2026, 6, 1)


def _source(spark):
    return spark.createDataFrame(LINES, SOURCE_SCHEMA)


def test_retail_lines_become_item_invoice_and_cancellation_events(spark) -> None:
    raw = retail.retail_to_events(_source(spark))
    rows = sorted((r.invoice_no, r.event_name, r.stock_code or "-", r.customer_id or "-", r.value, r.invoice_time)
                  for r in raw.collect())
    assert rows == [
        ("536365", "Item Purchased", "A", "17850", 6.0, NOON),
        ("536365", "Item Purchased", "B", "17850", 4.5, NOON),
        ("536365", "Item Purchased", "B", "17850", 4.5, NOON),
        ("536365", "Purchase Completed", "-", "17850", 15.0, NOON),  # 6 + 4.5 + 4.5: the source as it is
        ("536380", "Item Purchased", "D", "-", 3.0, WINTER),
        ("536380", "Purchase Completed", "-", "-", 3.0, WINTER),
        ("536381", "Item Purchased", "E", "12000", 0.0, WINTER),
        ("536381", "Purchase Completed", "-", "12000", 0.0, WINTER),
        ("C536379", "Order Cancelled", "-", "17850", 4.5, WINTER),
    ]


def test_retail_mess_is_quarantined_deduplicated_and_times_are_utc(spark) -> None:
    conformed = events.conform(retail.retail_to_events(_source(spark)), retail.RETAIL_COLUMNS, retail.RETAIL_TIMEZONE)
    result = events.validate(conformed, AS_OF, events.ValidationRules(dedup_key=retail.RETAIL_DEDUP_KEY))

    assert result.counts == {"null_user_id": 2, "null_event_name": 0, "null_event_time": 0, "future_event": 0,
                             "negative_value": 0, "bad_event_value": 0, "duplicates_removed": 1, "total": 9,
                             "valid": 6}
    valid = sorted((r.user_id, r.event_name, r.event_time, r.event_value, r.event_date)
                   for r in result.valid.collect())
    summer_utc, winter_utc = datetime(2011, 6, 1, 11, 0), datetime(2011, 1, 5, 9, 30)
    assert valid == [
        ("12000", "Item Purchased", winter_utc, 0.0, date(2011, 1, 5)),
        ("12000", "Purchase Completed", winter_utc, 0.0, date(2011, 1, 5)),
        ("17850", "Item Purchased", summer_utc, 4.5, date(2011, 6, 1)),
        ("17850", "Item Purchased", summer_utc, 6.0, date(2011, 6, 1)),
        ("17850", "Order Cancelled", winter_utc, 4.5, date(2011, 1, 5)),
        ("17850", "Purchase Completed", summer_utc, 15.0, date(2011, 6, 1)),
    ]
    assert sorted((r.invoice_no, r.event_name, r.reason) for r in result.rejected.collect()) == [
        ("536380", "Item Purchased", "null_user_id"), ("536380", "Purchase Completed", "null_user_id"),
    ]
    with pytest.raises(events.TooManyRejectedError, match="null_user_id=2"):
        events.check_rejected_share(result, 0.05)  # 2 of 9 rejected


def test_loader_job_writes_events_and_quarantine_idempotently(spark, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs import load_online_retail

    source = tmp_path / "retail.parquet"
    _source(spark).coalesce(1).write.parquet(str(source))
    monkeypatch.setenv("SEGMENTS_WORKSPACE", str(tmp_path / "ws"))
    argv = ["--source", str(source), "--run-date", "2026-06-01", "--conf", "local"]
    assert load_online_retail.main(argv) == 0
    assert load_online_retail.main(argv) == 0  # same run date again: replaced, not doubled

    stored = tables.read_delta(spark, tmp_path / "ws" / "tables" / "events")
    assert stored.schema == events.EVENT_SCHEMA
    assert stored.count() == 6
    quarantine = tables.read_delta(spark, tmp_path / "ws" / "tables" / "events_quarantine")
    assert sorted((r.reason, r.run_date) for r in quarantine.collect()) == [
        ("null_user_id", date(2026, 6, 1)), ("null_user_id", date(2026, 6, 1))]


@pytest.mark.slow
def test_real_online_retail_file_counts(spark) -> None:
    source = spark.read.parquet(str(PROJECT_ROOT / "data" / "online_retail.parquet"))
    conformed = events.conform(retail.retail_to_events(source), retail.RETAIL_COLUMNS, retail.RETAIL_TIMEZONE)
    result = events.validate(conformed, AS_OF, events.ValidationRules(dedup_key=retail.RETAIL_DEDUP_KEY))
    # From the data set's README: 541,909 lines of which 9,288 are cancellation lines; 25,900 invoices
    # (22,064 sales + 3,836 cancellations, counted with pandas). Without a customer: 134,697 sale lines,
    # 3,528 sale invoices and 182 cancellations = 138,407 rows. Exact repeated lines: 5,194.
    assert result.counts == {"null_user_id": 138_407, "null_event_name": 0, "null_event_time": 0,
                             "future_event": 0, "negative_value": 0, "bad_event_value": 0, "duplicates_removed": 5_194,
                             "total": 558_521, "valid": 414_920}
