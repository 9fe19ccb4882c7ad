"""The timeline engine computes exactly the features of the pairing engine it replaced (the oracle).

`benchmarks.paired_features.build_paired_features` is the engine as it was before the timeline redesign:
every event paired with each snapshot it precedes, window functions over the paired rows. Randomised
with hypothesis: event histories on an hour grid (ties, and events exactly on window edges, happen
often), one to four snapshots — a whole number of days apart or not, so the active-day grid needs one
or two classes — past windows from 2 to 70 days (70 needs two 64-bit words of active days), with and
without a bounded `history`. All users of one example go through one Spark job per engine.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.paired_features import build_paired_features
from segments_lib.features.engine import FeatureSpec, build_features
from segments_lib.features.spec import feature_columns
from segments_lib.language.definitions import DurationPair

T = datetime(2026, 6, 1)
NAMES = ("Add to Cart", "Open App", "Purchase Completed", "Unlisted Event")


def _spec(past_days: int, history_days: int | None) -> FeatureSpec:
    windows = tuple(timedelta(days=d) for d in sorted({1, max(1, past_days // 3), past_days}))
    return FeatureSpec(
        event_names=NAMES[:3],
        windows=windows,
        past_window=windows[-1],
        duration_pairs=(
            DurationPair("Add to Cart", "Purchase Completed", timedelta(hours=24)),
            DurationPair("Open App", "Unlisted Event", timedelta(hours=3)),  # B outside the scope
        ),
        value_events=("Purchase Completed", "Add to Cart"),
        history=None if history_days is None else timedelta(days=max(history_days, past_days)),
        base_events=("Purchase Completed",),
    )


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["u0", "u1", "u2", "u3"]),
        st.sampled_from(NAMES),
        st.integers(min_value=-90 * 24, max_value=2 * 24),  # hours from T; some after every snapshot
        st.one_of(st.none(), st.floats(min_value=0, max_value=500, allow_nan=False)),
    ),
    max_size=60,
)
# Snapshot offsets in hours before T: multiples of 24 share one day grid, the others need a second one.
SNAPSHOTS = st.lists(st.sampled_from([0, 24, 7 * 24, 14 * 24, 30 * 24, 5, 3 * 24 + 11]), min_size=1, max_size=4,
                     unique=True)


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=EVENTS, snapshot_hours=SNAPSHOTS, past_days=st.sampled_from([2, 7, 28, 70]),
       history_days=st.sampled_from([None, 10, 45]))
def test_timeline_features_equal_the_pairing_engines(spark, events, snapshot_hours, past_days, history_days) -> None:
    spec = _spec(past_days, history_days)
    rows = [(user, name, T + timedelta(hours=h), value) for user, name, h, value in events]
    frame = spark.createDataFrame(rows, "user_id string, event_name string, event_time timestamp, event_value double")
    snapshots = spark.createDataFrame([(T - timedelta(hours=h),) for h in snapshot_hours], "snapshot_time timestamp")

    def keyed(df) -> dict:
        return {(r.snapshot_time, r.user_id): r.asDict() for r in df.collect()}

    timeline = keyed(build_features(frame, snapshots, spec))
    paired = keyed(build_paired_features(frame, snapshots, spec))
    assert timeline.keys() == paired.keys()
    for key, expected in paired.items():
        for column in feature_columns(spec):
            got = timeline[key][column]
            assert _same(got, expected[column]), (key, column, got, expected[column])


def test_the_oracle_is_not_vacuous(spark) -> None:
    """One hand-made history where every family is non-trivial at two snapshots, so the property test
    compares real values: checked against hand-computed numbers, then timeline == oracle."""
    spec = _spec(7, None)
    hours = [(-100, "Purchase Completed", 10.0), (-50, "Add to Cart", 2.0), (-40, "Purchase Completed", 30.0),
             (-30, "Add to Cart", None), (-6, "Purchase Completed", 20.0), (-2, "Open App", None),
             (-1, "Unlisted Event", None)]
    frame = spark.createDataFrame([("u", n, T + timedelta(hours=h), v) for h, n, v in hours],
                                  "user_id string, event_name string, event_time timestamp, event_value double")
    snapshots = spark.createDataFrame([(T,), (T - timedelta(days=1),)], "snapshot_time timestamp")
    timeline = {r.snapshot_time: r.asDict() for r in build_features(frame, snapshots, spec).collect()}
    at_t, day_before = timeline[T], timeline[T - timedelta(days=1)]
    # Purchases at −100, −40 and −6 h: gaps 60 h and 34 h, both in P1 (7 d); at T − 1 d (−24 h) only 60 h.
    assert at_t["gap_mean_h__purchase_completed"] == (60 + 34) / 2
    assert at_t["gap_std_h__purchase_completed"] == 13.0
    assert at_t["gap_last_h__purchase_completed"] == 34.0
    assert day_before["gap_last_h__purchase_completed"] == 60.0
    assert day_before["gap_std_h__purchase_completed"] == 0.0
    # Carts at −50 h (purchase 10 h later) and −30 h (purchase 24 h later: within 24 h, followed)
    assert at_t["pair_mean_h__add_to_cart__purchase_completed"] == (10 + 24) / 2
    assert at_t["pair_unfollowed_1d__add_to_cart__purchase_completed"] == 0.0
    # at T − 1 d (−24 h) the −30 h cart's purchase (−6 h) is not seen yet: unfollowed so far
    assert day_before["pair_unfollowed_1d__add_to_cart__purchase_completed"] == 1.0
    assert day_before["pair_mean_h__add_to_cart__purchase_completed"] == 10.0
    assert at_t["value_sum_7d__purchase_completed"] == 60.0
    assert at_t["active_days_7d"] == 4.0  # 24 h periods 0 (−6, −2, −1 h), 1 (−40, −30 h), 2 (−50 h), 4 (−100 h)
    assert day_before["active_days_7d"] == 3.0  # from −24 h: periods 0 (−40, −30 h), 1 (−50 h), 3 (−100 h)
    paired = {r.snapshot_time: r.asDict() for r in build_paired_features(frame, snapshots, spec).collect()}
    for time, expected in paired.items():
        assert all(_same(timeline[time][c], expected[c]) for c in feature_columns(spec)), time
