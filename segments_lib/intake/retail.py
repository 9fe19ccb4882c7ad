"""UCI Online Retail invoice lines → raw events, mess included, for `events.conform` and `events.validate`.

The transform is faithful on purpose: lines without a customer, negative amounts (adjustments, bad
debt) and duplicate lines are passed through so the shared validation quarantines or removes them and
counts them. Invoice times are UK wall-clock times without a zone, hence `RETAIL_TIMEZONE`.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segments_lib.config import EventColumns

ITEM_PURCHASED = "Item Purchased"
PURCHASE_COMPLETED = "Purchase Completed"
ORDER_CANCELLED = "Order Cancelled"
RETAIL_TIMEZONE = "Europe/London"
RETAIL_COLUMNS = EventColumns(user_col="customer_id", event_col="event_name", time_col="invoice_time",
                              value_col="value")
# Two lines of one invoice can share user, time and amount yet be different products: the stock code
# and invoice belong to the key, so only truly repeated lines count as duplicates.
RETAIL_DEDUP_KEY = ("user_id", "event_name", "event_time", "event_value", "invoice_no", "stock_code")
# A quarter of the lines have no customer (known property of the data set): allow them to be quarantined.
RETAIL_MAX_REJECTED_SHARE = 0.30
SOURCE_COLUMNS = ("InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country")
RAW_COLUMNS = ("customer_id", "event_name", "invoice_time", "value", "invoice_no", "stock_code", "country")


def _customer_id(df: DataFrame) -> Column:
    # Some copies of the data set store the id as a float (17850.0); render it as the integer it is.
    col = F.col("CustomerID")
    if isinstance(df.schema["CustomerID"].dataType, T.StringType):
        return F.trim(col)
    return col.cast("long").cast("string")


def retail_to_events(df: DataFrame) -> DataFrame:
    """`Item Purchased` per line and `Purchase Completed` per invoice (value = Σ quantity × price), or
    `Order Cancelled` for a `C` invoice (value = the amount cancelled, positive).

    Columns: customer_id, event_name, invoice_time (naive UK time), value, invoice_no, stock_code,
    country. One aggregation (by invoice) for both invoice-level events.
    """
    missing = [c for c in SOURCE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"Online Retail source lacks columns {', '.join(missing)}; found {', '.join(df.columns)}")
    lines = df.select(
        _customer_id(df).alias("customer_id"),
        # UK wall-clock times without a zone: timestamp_ntz says so, and conform reads them in
        # RETAIL_TIMEZONE (a zone-aware timestamp would refuse a source zone).
        F.col("InvoiceDate").cast("timestamp_ntz").alias("invoice_time"),
        (F.col("Quantity").cast("double") * F.col("UnitPrice").cast("double")).alias("value"),
        F.col("InvoiceNo").cast("string").alias("invoice_no"),
        F.col("StockCode").cast("string").alias("stock_code"),
        F.col("Country").alias("country"),
    ).select("*", F.col("invoice_no").startswith("C").alias("cancelled"))

    items = lines.where(~F.col("cancelled")).select(
        "customer_id", F.lit(ITEM_PURCHASED).alias("event_name"), "invoice_time", "value", "invoice_no",
        "stock_code", "country",
    )
    invoices = lines.groupBy("invoice_no", "cancelled").agg(
        F.max("customer_id").alias("customer_id"),
        F.min("invoice_time").alias("invoice_time"),
        F.sum("value").alias("value"),
        F.max("country").alias("country"),
    ).select(
        "customer_id",
        F.when(F.col("cancelled"), F.lit(ORDER_CANCELLED)).otherwise(F.lit(PURCHASE_COMPLETED)).alias("event_name"),
        "invoice_time",
        F.when(F.col("cancelled"), -F.col("value")).otherwise(F.col("value")).alias("value"),
        "invoice_no",
        F.lit(None).cast("string").alias("stock_code"),
        "country",
    )
    return items.unionByName(invoices)
