"""Eligible population at each snapshot, on tiny events with hand-computed expectations."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pyspark.sql import DataFrame, SparkSession

from segments_lib.language.definitions import Eligibility
from segments_lib.language.eligibility import eligible_population, snapshot_frame

T = datetime(2026, 3, 1)
T2 = datetime(2026, 3, 15)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
ADD, BUY, OPEN = "Add to Cart", "Purchase Completed", "Open App"


def events(spark: SparkSession, rows: list[tuple[str, str, datetime]]) -> DataFrame:
    return spark.createDataFrame([(*r, None) for r in rows],
                                 "user_id string, event_name string, event_time timestamp, event_value double")


def members(df: DataFrame) -> set[tuple[datetime, str]]:
    return {(r.snapshot_time, r.user_id) for r in df.collect()}


def test_snapshot_frame_reads_naive_times_as_utc_and_deduplicates(spark) -> None:
    frame = snapshot_frame(spark, [T, T2, datetime(2026, 3, 1, 1, tzinfo=timezone(timedelta(hours=1)))])
    assert frame.columns == ["snapshot_time"]
    assert [r.snapshot_time for r in frame.orderBy("snapshot_time").collect()] == [T, T2]


def test_everyone_seen_strictly_before_t_is_eligible_without_rules(spark) -> None:
    rows = [("old", OPEN, T - 30 * DAY), ("at_t", OPEN, T), ("just_before", OPEN, T - SECOND), ("later", OPEN, T2)]
    got = members(eligible_population(events(spark, rows), snapshot_frame(spark, [T, T2]), Eligibility()))
    assert got == {(T, "old"), (T, "just_before"), (T2, "old"), (T2, "at_t"), (T2, "just_before")}


def test_active_in_keeps_users_with_an_event_in_the_half_open_window(spark) -> None:
    rows = [
        ("edge_start", OPEN, T - 28 * DAY),  # exactly T − 28d: inside [T − 28d, T)
        ("too_old", OPEN, T - 28 * DAY - SECOND),
        ("recent", BUY, T - DAY),
        ("only_at_t", OPEN, T),
    ]
    got = members(eligible_population(events(spark, rows), snapshot_frame(spark, [T]),
                                      Eligibility(active_in=28 * DAY)))
    assert got == {(T, "edge_start"), (T, "recent")}


def test_has_done_needs_every_listed_event_before_t(spark) -> None:
    rows = [
        ("both", ADD, T - 40 * DAY), ("both", BUY, T - DAY),
        ("only_add", ADD, T - DAY),
        ("buy_at_t", ADD, T - DAY), ("buy_at_t", BUY, T),
    ]
    got = members(eligible_population(events(spark, rows), snapshot_frame(spark, [T]),
                                      Eligibility(has_done=(ADD, BUY))))
    assert got == {(T, "both")}
    within_30d = members(eligible_population(events(spark, rows), snapshot_frame(spark, [T]),
                                             Eligibility(has_done=(ADD, BUY), lookback=30 * DAY)))
    assert within_30d == set()  # "both" added to cart 40 days ago, outside the lookback


def test_not_done_excludes_users_with_any_listed_event(spark) -> None:
    rows = [
        ("bought_long_ago", OPEN, T - DAY), ("bought_long_ago", BUY, T - 60 * DAY),
        ("never_bought", OPEN, T - DAY),
        ("bought_at_t", OPEN, T - DAY), ("bought_at_t", BUY, T),
        ("added", ADD, T - DAY),
    ]
    ever = members(eligible_population(events(spark, rows), snapshot_frame(spark, [T]),
                                       Eligibility(not_done=(BUY, ADD))))
    assert ever == {(T, "never_bought"), (T, "bought_at_t")}
    recently = members(eligible_population(events(spark, rows), snapshot_frame(spark, [T]),
                                           Eligibility(not_done=(BUY,), lookback=30 * DAY)))
    assert recently == {(T, "bought_long_ago"), (T, "never_bought"), (T, "bought_at_t"), (T, "added")}


def test_rules_combine_and_each_snapshot_is_judged_on_its_own_past(spark) -> None:
    rows = [
        ("u", ADD, T - DAY),   # active and has added at T; by T2 the add is 15 days old
        ("v", ADD, T2 - DAY), ("v", BUY, T2 - 2 * DAY),
    ]
    rule = Eligibility(active_in=7 * DAY, has_done=(ADD,), not_done=(BUY,))
    got = members(eligible_population(events(spark, rows), snapshot_frame(spark, [T, T2]), rule))
    assert got == {(T, "u")}
