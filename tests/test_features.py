"""Feature engine: hand-computed expectations per feature family on tiny explicit frames."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from segments_lib.features.engine import (
    FeatureSpec,
    build_features,
    demo_spec,
    event_profile,
    feature_columns,
    feature_spec_for,
)
from segments_lib.language.definitions import DurationPair, Occurs, SegmentDefinition

T = datetime(2026, 6, 1)
DAY, HOUR = timedelta(days=1), timedelta(hours=1)
CART, OPEN, BUY = "Add to Cart", "Open App", "Purchase Completed"
EVENTS_SCHEMA = "user_id string, event_name string, event_time timestamp, event_value double"

SPEC = FeatureSpec(
    event_names=(CART, OPEN, BUY),
    windows=(DAY, 7 * DAY, 28 * DAY),
    past_window=28 * DAY,
    duration_pairs=(DurationPair(CART, BUY, 24 * HOUR),),
    value_events=(BUY,),
)


def features(spark, rows: list[tuple], snapshots: tuple[datetime, ...] = (T,), spec: FeatureSpec = SPEC) -> dict:
    """{(snapshot_time, user_id): {feature: value}} for the given event rows."""
    events = spark.createDataFrame(rows, EVENTS_SCHEMA)
    snaps = spark.createDataFrame([(s,) for s in snapshots], "snapshot_time timestamp")
    out = build_features(events, snaps, spec)
    return {(r.snapshot_time, r.user_id): r.asDict() for r in out.collect()}


def test_output_has_snapshot_user_then_feature_columns_all_doubles(spark) -> None:
    events = spark.createDataFrame([("u", OPEN, T - HOUR, None)], EVENTS_SCHEMA)
    out = build_features(events, spark.createDataFrame([(T,)], "snapshot_time timestamp"), SPEC)
    assert out.columns == ["snapshot_time", "user_id", *feature_columns(SPEC)]
    assert {t for c, t in out.dtypes[2:]} == {"double"}
    assert feature_columns(SPEC)[:4] == ["tenure_days", "active_days_28d", "distinct_events_28d", "trend_7d_vs_rest"]
    assert "freq_7d__purchase_completed" in feature_columns(SPEC)
    assert "pair_unfollowed_1d__add_to_cart__purchase_completed" in feature_columns(SPEC)


def test_frequency_window_edges_are_half_open(spark) -> None:
    rows = [
        ("u", OPEN, T - DAY, None),  # exactly T − 1d: inside 1d, 7d, 28d
        ("u", OPEN, T - 7 * DAY, None),  # exactly T − 7d: inside 7d, 28d
        ("u", OPEN, T - 28 * DAY, None),  # exactly T − 28d: inside 28d
        ("u", OPEN, T - 28 * DAY - timedelta(seconds=1), None),  # just before P1: in no window
        ("u", OPEN, T, None),  # exactly T: excluded
        ("u", OPEN, T + HOUR, None),  # future: excluded
    ]
    f = features(spark, rows)[(T, "u")]
    assert (f["freq_1d__open_app"], f["freq_7d__open_app"], f["freq_28d__open_app"]) == (1.0, 2.0, 3.0)
    assert (f["freq_1d__add_to_cart"], f["freq_7d__add_to_cart"], f["freq_28d__add_to_cart"]) == (0.0, 0.0, 0.0)
    assert f["recency_days__open_app"] == 1.0
    assert f["tenure_days"] == pytest.approx(28 + 1 / 86400)


def test_recency_is_days_since_last_and_null_when_never(spark) -> None:
    rows = [("u", OPEN, T - 30 * DAY, None), ("u", OPEN, T - 36 * HOUR, None), ("u", CART, T - 6 * HOUR, None)]
    f = features(spark, rows)[(T, "u")]
    assert f["recency_days__open_app"] == 1.5
    assert f["recency_days__add_to_cart"] == 0.25
    assert f["recency_days__purchase_completed"] is None
    assert f["freq_28d__purchase_completed"] == 0.0


def test_gap_statistics_use_consecutive_occurrences_inside_p1(spark) -> None:
    rows = [
        ("u", OPEN, T - 29 * DAY, None),  # before P1: its gap to the next one is not counted
        ("u", OPEN, T - 60 * HOUR, None),
        ("u", OPEN, T - 30 * HOUR, None),  # gap 30 h
        ("u", OPEN, T - 20 * HOUR, None),  # gap 10 h, the last gap
        ("single", OPEN, T - 5 * HOUR, None),
    ]
    got = features(spark, rows)
    f = got[(T, "u")]
    assert (f["gap_mean_h__open_app"], f["gap_min_h__open_app"], f["gap_max_h__open_app"]) == (20.0, 10.0, 30.0)
    assert f["gap_std_h__open_app"] == 10.0  # population std of {30, 10}
    assert f["gap_last_h__open_app"] == 10.0
    single = got[(T, "single")]
    assert [single[f"gap_{s}_h__open_app"] for s in ("mean", "min", "max", "std", "last")] == [None] * 5
    assert single["gap_mean_h__add_to_cart"] is None


def test_last_gap_is_zero_when_the_last_two_occurrences_share_a_time(spark) -> None:
    rows = [("u", OPEN, T - 10 * HOUR, None), ("u", OPEN, T - 4 * HOUR, None), ("u", OPEN, T - 4 * HOUR, None)]
    f = features(spark, rows)[(T, "u")]
    assert f["gap_last_h__open_app"] == 0.0
    assert (f["gap_min_h__open_app"], f["gap_max_h__open_app"]) == (0.0, 6.0)


def test_pairs_follow_up_times_and_unfollowed_counts(spark) -> None:
    rows = [
        ("u", CART, T - 10 * DAY, None),
        ("u", BUY, T - 10 * DAY + 30 * HOUR, 5.0),  # 30 h after: followed, but not within 24 h
        ("u", CART, T - 50 * HOUR, None),
        ("u", BUY, T - 26 * HOUR, 5.0),  # exactly 24 h after: followed within H
        ("u", CART, T - 20 * HOUR, None),  # nothing after it before T: unfollowed so far
        ("same", CART, T - 3 * HOUR, None),
        ("same", BUY, T - 3 * HOUR, 1.0),  # same instant: followed after 0 h
        ("nobuy", CART, T - 2 * DAY, None),
        ("nocart", BUY, T - 2 * DAY, 1.0),
    ]
    got = features(spark, rows)
    u = got[(T, "u")]
    assert u["pair_mean_h__add_to_cart__purchase_completed"] == 27.0  # mean of 30 h and 24 h
    assert u["pair_unfollowed_1d__add_to_cart__purchase_completed"] == 2.0
    same = got[(T, "same")]
    assert same["pair_mean_h__add_to_cart__purchase_completed"] == 0.0
    assert same["pair_unfollowed_1d__add_to_cart__purchase_completed"] == 0.0
    nobuy = got[(T, "nobuy")]
    assert nobuy["pair_mean_h__add_to_cart__purchase_completed"] is None
    assert nobuy["pair_unfollowed_1d__add_to_cart__purchase_completed"] == 1.0
    nocart = got[(T, "nocart")]
    assert nocart["pair_mean_h__add_to_cart__purchase_completed"] is None
    assert nocart["pair_unfollowed_1d__add_to_cart__purchase_completed"] == 0.0


def test_pair_follow_up_after_t_is_not_seen(spark) -> None:
    rows = [("u", CART, T - 2 * HOUR, None), ("u", BUY, T + HOUR, 9.0)]
    u = features(spark, rows)[(T, "u")]
    assert u["pair_mean_h__add_to_cart__purchase_completed"] is None
    assert u["pair_unfollowed_1d__add_to_cart__purchase_completed"] == 1.0


def test_value_sum_mean_max_over_p1(spark) -> None:
    rows = [
        ("u", BUY, T - 2 * DAY, 20.0),
        ("u", BUY, T - 3 * DAY, 40.0),
        ("u", BUY, T - 4 * DAY, None),  # no value: counted as an occurrence, not in value stats
        ("u", BUY, T - 40 * DAY, 100.0),  # before P1
        ("u", CART, T - DAY, 999.0),  # not a value event
        ("nobuy", OPEN, T - DAY, None),
    ]
    got = features(spark, rows)
    u = got[(T, "u")]
    assert (u["value_sum_28d__purchase_completed"], u["value_mean__purchase_completed"]) == (60.0, 30.0)
    assert u["value_max__purchase_completed"] == 40.0
    assert u["freq_28d__purchase_completed"] == 3.0
    nobuy = got[(T, "nobuy")]
    assert nobuy["value_sum_28d__purchase_completed"] == 0.0
    assert (nobuy["value_mean__purchase_completed"], nobuy["value_max__purchase_completed"]) == (None, None)


def test_overall_tenure_active_days_distinct_events_and_trend(spark) -> None:
    rows = [
        ("u", OPEN, T - HOUR, None),  # period 0 (last 24 h)
        ("u", CART, T - 2 * HOUR, None),  # period 0
        ("u", OPEN, T - 25 * HOUR, None),  # period 1; the 7d part has 3 events
        ("u", OPEN, T - 10 * DAY, None),
        ("u", "Other Event", T - 20 * DAY, None),  # out of scope: counts for activity, not distinct events
        ("u", OPEN, T - 40 * DAY, None),  # before P1: tenure only
        ("old", OPEN, T - 50 * DAY, None),
    ]
    got = features(spark, rows)
    u = got[(T, "u")]
    assert u["tenure_days"] == 40.0
    assert u["active_days_28d"] == 4.0  # periods 0, 1, 9 and 19
    assert u["distinct_events_28d"] == 2.0  # Open App, Add to Cart
    # 3 events in 7 days against 2 in the other 21: (3/7 − 2/21) / (3/7 + 2/21) = (9 − 2) / (9 + 2)
    assert u["trend_7d_vs_rest"] == pytest.approx(7 / 11)
    old = got[(T, "old")]
    assert (old["active_days_28d"], old["distinct_events_28d"], old["trend_7d_vs_rest"]) == (0.0, 0.0, None)
    assert old["recency_days__open_app"] == 50.0


def test_several_snapshots_in_one_frame(spark) -> None:
    t_early = T - 7 * DAY
    rows = [
        ("u", OPEN, T - 10 * DAY, None),
        ("u", OPEN, T - 3 * DAY, None),
        ("late", BUY, T - 3 * DAY, 10.0),  # after the early snapshot: no row there
    ]
    got = features(spark, rows, snapshots=(T, t_early))
    assert set(got) == {(T, "u"), (t_early, "u"), (T, "late")}
    assert got[(t_early, "u")]["recency_days__open_app"] == 3.0
    assert got[(t_early, "u")]["freq_28d__open_app"] == 1.0
    assert got[(t_early, "u")]["gap_mean_h__open_app"] is None
    assert got[(T, "u")]["recency_days__open_app"] == 3.0
    assert got[(T, "u")]["freq_28d__open_app"] == 2.0
    assert got[(T, "u")]["gap_mean_h__open_app"] == 168.0
    assert got[(T, "late")]["value_sum_28d__purchase_completed"] == 10.0


def test_history_bounds_recency_and_tenure(spark) -> None:
    bounded = FeatureSpec(
        event_names=(OPEN,), windows=(7 * DAY, 28 * DAY), past_window=28 * DAY, history=60 * DAY
    )
    rows = [("u", OPEN, T - 90 * DAY, None), ("u", OPEN, T - 45 * DAY, None), ("gone", OPEN, T - 61 * DAY, None)]
    got = features(spark, rows, spec=bounded)
    assert set(got) == {(T, "u")}
    assert got[(T, "u")]["tenure_days"] == 45.0


def test_missing_event_column_is_named(spark) -> None:
    events = spark.createDataFrame([("u", OPEN, T)], "user_id string, event_name string, event_time timestamp")
    snaps = spark.createDataFrame([(T,)], "snapshot_time timestamp")
    with pytest.raises(ValueError, match=r"events frame lacks column\(s\) \['event_value'\]"):
        build_features(events, snaps, SPEC)


def test_spec_rejects_bad_windows_and_colliding_names() -> None:
    with pytest.raises(ValueError, match="must end with past_window 28d"):
        FeatureSpec(event_names=(OPEN,), windows=(DAY, 7 * DAY), past_window=28 * DAY)
    with pytest.raises(ValueError, match="ascending"):
        FeatureSpec(event_names=(OPEN,), windows=(28 * DAY, DAY), past_window=28 * DAY)
    with pytest.raises(ValueError, match="'Open App' and 'open-app' both map to column suffix 'open_app'"):
        FeatureSpec(event_names=(OPEN, "open-app"), windows=(28 * DAY,), past_window=28 * DAY)
    with pytest.raises(ValueError, match=r"value_events \['Refund'\] are not in event_names"):
        FeatureSpec(event_names=(OPEN,), windows=(28 * DAY,), past_window=28 * DAY, value_events=("Refund",))


def _segment(**kwargs: object) -> SegmentDefinition:
    return SegmentDefinition(
        name="s", kind="conversion", target=Occurs((BUY,)), past_window=14 * DAY, prediction_window=7 * DAY,
        **kwargs,
    )


def test_feature_spec_for_scope_windows_pairs_and_values() -> None:
    counts = {"b": 5, "a": 5, "c": 9, "d": 1}
    everything = feature_spec_for(_segment(), counts, valued_events={"c", "zzz"})
    assert everything.event_names == ("a", "b", "c", "d")
    assert everything.windows == (DAY, 7 * DAY, 14 * DAY)
    assert everything.value_events == ("c",)
    assert feature_spec_for(_segment(top_events=2), counts).event_names == ("a", "c")  # c 9, then a/b tie by name
    pair = DurationPair("x", "y", 2 * HOUR)
    chosen = feature_spec_for(_segment(feature_events=("y", "x"), duration_pairs=(pair,)), counts)
    assert (chosen.event_names, chosen.duration_pairs) == (("y", "x"), (pair,))
    with pytest.raises(ValueError, match="segment 's': no events"):
        feature_spec_for(_segment(), {})


def test_event_profile_counts_and_valued_events(spark) -> None:
    events = spark.createDataFrame(
        [("u", OPEN, T, None), ("v", OPEN, T, None), ("u", BUY, T, 3.0), ("u", BUY, T, None)], EVENTS_SCHEMA
    )
    assert event_profile(events) == ({OPEN: 2, BUY: 2}, frozenset({BUY}))


def test_docs_catalog_is_generated_from_the_demo_spec() -> None:
    root = Path(__file__).resolve().parent.parent
    generated = subprocess.run(
        [sys.executable, "-m", "segments_lib.features.engine", "--catalog"], cwd=root, capture_output=True, text=True,
        check=True,
    ).stdout
    assert (root / "docs" / "features.md").read_text(encoding="utf-8") == generated, (
        "docs/features.md is stale: run `python -m segments_lib.features.engine --catalog > docs/features.md`"
    )
    assert generated.count("\n| `") == len(feature_columns(demo_spec()))
