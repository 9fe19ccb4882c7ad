"""Labels for every target term and composition, on tiny events with hand-computed expectations.

T = 2026-03-01 00:00 UTC and P3 = 7 days throughout, so the label window is [03-01, 03-08).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import pytest
from pyspark.sql import DataFrame, SparkSession

from segments_lib.language.definitions import Absent, AllOf, AnyOf, Occurs, Sequence, ValueSum
from segments_lib.language.targets import build_labels

T = datetime(2026, 3, 1)
T2 = datetime(2026, 3, 15)
P3 = timedelta(days=7)
SECOND = timedelta(seconds=1)
EVENTS_SCHEMA = "user_id string, event_name string, event_time timestamp, event_value double"
ADD, BUY, OPEN, CLICK = "Add to Cart", "Purchase Completed", "Open App", "Click Notification"


def events(spark: SparkSession, rows: list[tuple[str, str, datetime, float | None]]) -> DataFrame:
    return spark.createDataFrame(rows, EVENTS_SCHEMA)


def population(spark: SparkSession, users: Iterable[str], at: datetime = T) -> DataFrame:
    return spark.createDataFrame([(at, u) for u in users], "snapshot_time timestamp, user_id string")


def labels_by_user(df: DataFrame) -> dict[str, int]:
    rows = df.collect()
    assert [r.snapshot_time for r in rows] == [T] * len(rows)
    return {r.user_id: r.label for r in rows}


def test_label_frame_has_the_contract_columns_and_one_row_per_population_row(spark) -> None:
    labels = build_labels(events(spark, [("a", BUY, T, 1.0), ("a", BUY, T, 2.0)]), population(spark, "ab"),
                          Occurs((BUY,)), P3)
    assert labels.columns == ["snapshot_time", "user_id", "label"]
    assert dict(labels.dtypes)["label"] == "int"
    assert labels.count() == 2


def test_occurs_counts_an_event_at_t_but_not_at_t_plus_p3(spark) -> None:
    rows = [
        ("at_t", BUY, T, 10.0),
        ("at_end", BUY, T + P3, 10.0),
        ("just_before_end", BUY, T + P3 - SECOND, 10.0),
        ("just_before_t", BUY, T - SECOND, 10.0),
        ("other_event", OPEN, T + timedelta(days=1), None),
    ]
    users = ["at_t", "at_end", "just_before_end", "just_before_t", "other_event", "no_events"]
    pop = spark.createDataFrame([(T, u) for u in users], "snapshot_time timestamp, user_id string")
    got = labels_by_user(build_labels(events(spark, rows), pop, Occurs((BUY,)), P3))
    assert got == {"at_t": 1, "at_end": 0, "just_before_end": 1, "just_before_t": 0, "other_event": 0,
                   "no_events": 0}


def test_occurs_min_count_and_value_filter(spark) -> None:
    day = timedelta(days=1)
    rows = [
        ("twice", BUY, T + day, 30.0), ("twice", BUY, T + 2 * day, 40.0),
        ("once", BUY, T + day, 30.0),
        ("twice_one_small", BUY, T + day, 5.0), ("twice_one_small", BUY, T + 2 * day, 40.0),
        ("twice_one_big", BUY, T + day, 500.0), ("twice_one_big", BUY, T + 2 * day, 40.0),
        ("twice_at_bounds", BUY, T + day, 10.0), ("twice_at_bounds", BUY, T + 2 * day, 100.0),
        ("null_values", BUY, T + day, None), ("null_values", BUY, T + 2 * day, None),
    ]
    target = Occurs((BUY,), min_count=2, value_at_least=10.0, value_at_most=100.0)
    pop = population(spark, sorted({r[0] for r in rows}))
    got = labels_by_user(build_labels(events(spark, rows), pop, target, P3))
    assert got == {"twice": 1, "once": 0, "twice_one_small": 0, "twice_one_big": 0, "twice_at_bounds": 1,
                   "null_values": 0}


def test_occurs_with_several_events_counts_any_of_them(spark) -> None:
    rows = [("mixed", BUY, T, 1.0), ("mixed", CLICK, T + SECOND, None), ("one", CLICK, T, None)]
    got = labels_by_user(build_labels(events(spark, rows), population(spark, ["mixed", "one"]),
                                      Occurs((BUY, CLICK), min_count=2), P3))
    assert got == {"mixed": 1, "one": 0}


def test_absent_is_one_for_users_without_the_events_in_the_window(spark) -> None:
    rows = [
        ("opened", OPEN, T + timedelta(days=3), None),
        ("opened_at_t", OPEN, T, None),
        ("opened_at_end", OPEN, T + P3, None),
        ("opened_before", OPEN, T - SECOND, None),
        ("only_other", BUY, T + timedelta(days=1), 5.0),
        ("clicked", CLICK, T + timedelta(days=6), None),
    ]
    users = ["opened", "opened_at_t", "opened_at_end", "opened_before", "only_other", "clicked", "silent"]
    pop = spark.createDataFrame([(T, u) for u in users], "snapshot_time timestamp, user_id string")
    got = labels_by_user(build_labels(events(spark, rows), pop, Absent((OPEN, CLICK)), P3))
    assert got == {"opened": 0, "opened_at_t": 0, "opened_at_end": 1, "opened_before": 1, "only_other": 1,
                   "clicked": 0, "silent": 1}


def test_value_sum_at_least(spark) -> None:
    day = timedelta(days=1)
    rows = [
        ("sum_110", BUY, T, 60.0), ("sum_110", BUY, T + day, 50.0),
        ("sum_99", BUY, T + day, 99.0),
        ("exactly_100", BUY, T + P3 - SECOND, 100.0),
        ("big_at_end", BUY, T + P3, 500.0),
        ("other_event_value", OPEN, T + day, 1000.0),
        ("null_value", BUY, T + day, None), ("null_value", BUY, T + 2 * day, 100.0),
    ]
    pop = population(spark, sorted({r[0] for r in rows}))
    got = labels_by_user(build_labels(events(spark, rows), pop, ValueSum((BUY,), at_least=100.0), P3))
    assert got == {"sum_110": 1, "sum_99": 0, "exactly_100": 1, "big_at_end": 0, "other_event_value": 0,
                   "null_value": 1}


def test_value_sum_top_fraction_ranks_within_each_snapshot(spark) -> None:
    day = timedelta(days=1)
    rows = [
        # snapshot T, population a..e: sums 300, 200, 100, 0, 0 → shares 1/5, 2/5, 3/5, 1, 1
        ("a", BUY, T + day, 300.0), ("b", BUY, T + day, 200.0), ("c", BUY, T + day, 100.0),
        # snapshot T2, population a..d: a 50, b 50 (tie), c 10, d 0 → shares 2/4, 2/4, 3/4, 1
        ("a", BUY, T2 + day, 50.0), ("b", BUY, T2 + day, 50.0), ("c", BUY, T2 + day, 10.0),
    ]
    pop = spark.createDataFrame([(T, u) for u in "abcde"] + [(T2, u) for u in "abcd"],
                                "snapshot_time timestamp, user_id string")
    labels = build_labels(events(spark, rows), pop, ValueSum((BUY,), top_fraction=0.4), P3)
    got = {(r.snapshot_time, r.user_id): r.label for r in labels.collect()}
    assert got == {
        (T, "a"): 1, (T, "b"): 1, (T, "c"): 0, (T, "d"): 0, (T, "e"): 0,
        # 0.4 < 2/4: the tied pair at the top would overflow the fraction, so neither is in
        (T2, "a"): 0, (T2, "b"): 0, (T2, "c"): 0, (T2, "d"): 0,
    }
    half = build_labels(events(spark, rows), pop, ValueSum((BUY,), top_fraction=0.5), P3)
    assert sorted((r.snapshot_time, r.user_id) for r in half.where("label = 1").collect()) == [
        (T, "a"), (T, "b"), (T2, "a"), (T2, "b"),
    ]


def test_sequence_edges_of_the_follow_up_and_the_window(spark) -> None:
    hour, day = timedelta(hours=1), timedelta(days=1)
    rows = [
        ("followed_exactly_h", ADD, T + hour, 1.0), ("followed_exactly_h", BUY, T + hour + day, 1.0),
        ("followed_just_after_h", ADD, T + hour, 1.0), ("followed_just_after_h", BUY, T + hour + day + SECOND, 1.0),
        ("followed_after_p3", ADD, T + P3 - hour, 1.0), ("followed_after_p3", BUY, T + P3 + 23 * hour, 1.0),
        ("unfollowed_late_add", ADD, T + P3 - hour, 1.0),
        ("add_at_end", ADD, T + P3, 1.0),
        ("add_at_t", ADD, T, 1.0),
        ("buy_before_add", BUY, T + hour, 1.0), ("buy_before_add", ADD, T + 2 * hour, 1.0),
        ("same_instant", ADD, T + hour, 1.0), ("same_instant", BUY, T + hour, 1.0),
        ("second_add_unfollowed", ADD, T + hour, 1.0), ("second_add_unfollowed", BUY, T + 2 * hour, 1.0),
        ("second_add_unfollowed", ADD, T + 3 * day, 1.0),
        ("add_before_t", ADD, T - hour, 1.0),
    ]
    pop = spark.createDataFrame([(T, u) for u in sorted({r[0] for r in rows})] + [(T, "no_events")],
                                "snapshot_time timestamp, user_id string")
    got = labels_by_user(build_labels(events(spark, rows), pop, Sequence(ADD, BUY, day), P3))
    assert got == {
        "followed_exactly_h": 0,
        "followed_just_after_h": 1,
        "followed_after_p3": 0,
        "unfollowed_late_add": 1,
        "add_at_end": 0,
        "add_at_t": 1,
        "buy_before_add": 1,
        "same_instant": 0,
        "second_add_unfollowed": 1,
        "add_before_t": 0,
        "no_events": 0,
    }


def test_all_of_needs_every_term(spark) -> None:
    rows = [("added_only", ADD, T, 1.0), ("added_and_bought", ADD, T, 1.0), ("added_and_bought", BUY, T, 9.0)]
    target = AllOf((Occurs((ADD,)), Absent((BUY,))))
    got = labels_by_user(build_labels(events(spark, rows), population(spark, ["added_only", "added_and_bought",
                                                                              "silent"]), target, P3))
    assert got == {"added_only": 1, "added_and_bought": 0, "silent": 0}


def test_any_of_needs_one_term(spark) -> None:
    rows = [("bought", BUY, T, 9.0), ("clicked", CLICK, T + timedelta(days=2), None), ("opened", OPEN, T, None)]
    target = AnyOf((Occurs((BUY,)), Occurs((CLICK,))))
    got = labels_by_user(build_labels(events(spark, rows), population(spark, ["bought", "clicked", "opened"]),
                                      target, P3))
    assert got == {"bought": 1, "clicked": 1, "opened": 0}


def test_nested_composition_with_a_sequence_looks_past_p3_for_the_follow_up(spark) -> None:
    hour = timedelta(hours=1)
    late_add = T + P3 - hour
    rows = [
        ("opened_followed", OPEN, T, None), ("opened_followed", ADD, late_add, 1.0),
        ("opened_followed", BUY, late_add + 3 * hour, 5.0),
        ("opened_unfollowed", OPEN, T, None), ("opened_unfollowed", ADD, late_add, 1.0),
        ("unfollowed_not_opened", ADD, late_add, 1.0),
        ("big_spender", BUY, T, 500.0),
    ]
    # (opened the app AND abandoned a cart) OR spent at least 400
    target = AnyOf((AllOf((Occurs((OPEN,)), Sequence(ADD, BUY, timedelta(hours=24)))),
                    ValueSum((BUY,), at_least=400.0)))
    users = ["opened_followed", "opened_unfollowed", "unfollowed_not_opened", "big_spender"]
    got = labels_by_user(build_labels(events(spark, rows), population(spark, users), target, P3))
    assert got == {"opened_followed": 0, "opened_unfollowed": 1, "unfollowed_not_opened": 0, "big_spender": 1}


@pytest.mark.parametrize(("target", "expected"), [
    (Occurs((BUY,)), 1),
    (Absent((BUY,)), 0),
])
def test_labels_follow_each_snapshot_separately(spark, target, expected: int) -> None:
    rows = [("u", BUY, T + timedelta(days=1), 5.0)]
    pop = spark.createDataFrame([(T, "u"), (T2, "u")], "snapshot_time timestamp, user_id string")
    got = {r.snapshot_time: r.label for r in build_labels(events(spark, rows), pop, target, P3).collect()}
    assert got == {T: expected, T2: 1 - expected}
