"""Customer-base features (issue 19): whole-history count, first occurrence, span, rate and silence in units
of the user's own gap, per target event; hand-computed on tiny frames, including users whose tenure and
silence lie far beyond any past window."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from segments_lib.features.engine import FeatureSpec, build_features, feature_columns, feature_spec_for
from segments_lib.language.definitions import Absent, AnyOf, Occurs, SegmentDefinition

T = datetime(2026, 6, 1)
DAY = timedelta(days=1)
OPEN, BUY = "Open App", "Purchase Completed"
EVENTS_SCHEMA = "user_id string, event_name string, event_time timestamp, event_value double"
SPEC = FeatureSpec(event_names=(OPEN, BUY), windows=(7 * DAY, 28 * DAY), past_window=28 * DAY, base_events=(BUY,))
BASE = ["count_all__purchase_completed", "first_days__purchase_completed", "span_days__purchase_completed",
        "rate_all__purchase_completed", "silence_to_gap__purchase_completed"]


def features(spark, rows: list[tuple], snapshots: tuple[datetime, ...] = (T,)) -> dict:
    events = spark.createDataFrame(rows, EVENTS_SCHEMA)
    snaps = spark.createDataFrame([(s,) for s in snapshots], "snapshot_time timestamp")
    return {(r.snapshot_time, r.user_id): r.asDict() for r in build_features(events, snaps, SPEC).collect()}


def test_columns_come_last_for_the_base_events_only() -> None:
    assert feature_columns(SPEC)[-5:] == BASE
    assert not any(c.endswith("__open_app") and c.split("__")[0] in {"count_all", "rate_all"}
                   for c in feature_columns(SPEC))


def test_a_regular_buyer_over_a_long_history(spark) -> None:
    # Purchases 400, 300, 200 and 100 days before T (a 100-day pace), far beyond the 28d past window.
    rows = [("u", BUY, T - d * DAY, 10.0) for d in (400, 300, 200, 100)] + [("u", OPEN, T - 2 * DAY, None)]
    f = features(spark, rows)[(T, "u")]
    assert f["freq_28d__purchase_completed"] == 0.0  # the window sees none of it
    assert f["count_all__purchase_completed"] == 4.0
    assert f["first_days__purchase_completed"] == 400.0
    assert f["span_days__purchase_completed"] == 300.0  # 400 − 100
    assert f["rate_all__purchase_completed"] == pytest.approx(4 / 400)
    # 100 days of silence at a mean gap of 300 / 3 = 100 days: exactly one usual gap.
    assert f["silence_to_gap__purchase_completed"] == pytest.approx(1.0)
    assert f["tenure_days"] == 400.0


def test_the_ratios_do_not_grow_with_age_while_the_raw_times_do(spark) -> None:
    # Two users with the same 10-day pace and 20 days of silence; "old" started 10x earlier.
    young = [("young", BUY, T - d * DAY, None) for d in (60, 50, 40, 30, 20)]
    old = [("old", BUY, T - d * DAY, None) for d in range(510, 19, -10)]  # 510, 500, …, 20: 50 purchases
    f = features(spark, young + old)
    y, o = f[(T, "young")], f[(T, "old")]
    assert (y["first_days__purchase_completed"], o["first_days__purchase_completed"]) == (60.0, 510.0)
    # silence / mean gap: 20 / (40 / 4) = 2 and 20 / (490 / 49) = 2 — the same "two usual gaps".
    assert y["silence_to_gap__purchase_completed"] == pytest.approx(2.0)
    assert o["silence_to_gap__purchase_completed"] == pytest.approx(2.0)
    # rate since the first purchase: 5 / 60 and 50 / 510, both close to one per 10 days.
    assert y["rate_all__purchase_completed"] == pytest.approx(5 / 60)
    assert o["rate_all__purchase_completed"] == pytest.approx(50 / 510)


def test_never_and_once(spark) -> None:
    rows = [("never", OPEN, T - DAY, None), ("once", BUY, T - 3 * DAY, None)]
    f = features(spark, rows)
    never, once = f[(T, "never")], f[(T, "once")]
    assert [never[c] for c in BASE] == [0.0, None, None, 0.0, None]
    assert [once[c] for c in BASE] == [1.0, 3.0, 0.0, pytest.approx(1 / 3), None]


def test_history_bounds_the_customer_base_features_too(spark) -> None:
    rows = [("u", BUY, T - d * DAY, None) for d in (100, 50, 10)]
    events = spark.createDataFrame(rows, EVENTS_SCHEMA)
    snaps = spark.createDataFrame([(T,)], "snapshot_time timestamp")
    bounded = FeatureSpec(event_names=(BUY,), windows=(28 * DAY,), past_window=28 * DAY, base_events=(BUY,),
                          history=60 * DAY)
    f = build_features(events, snaps, bounded).first().asDict()
    # Only the purchases 50 and 10 days back are in the 60-day history.
    assert (f["count_all__purchase_completed"], f["first_days__purchase_completed"]) == (2.0, 50.0)
    assert f["silence_to_gap__purchase_completed"] == pytest.approx(10 / 40)


def test_base_events_are_the_targets_events_in_scope() -> None:
    def segment(target) -> SegmentDefinition:
        return SegmentDefinition(name="s", kind="k", target=target, past_window=28 * DAY, prediction_window=7 * DAY)

    counts = {OPEN: 5, BUY: 3}
    assert feature_spec_for(segment(Occurs((BUY,))), counts).base_events == (BUY,)
    assert feature_spec_for(segment(AnyOf((Occurs((BUY,)), Absent((OPEN, "Gone"))))), counts).base_events == (BUY, OPEN)
    with pytest.raises(ValueError, match="base_events"):
        FeatureSpec(event_names=(OPEN,), windows=(DAY,), past_window=DAY, base_events=(BUY,))
