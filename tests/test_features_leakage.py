"""No leakage: events at or after T never change any feature at T (randomised with hypothesis).

Each example builds three variants of the same history in one frame — the past alone, the past plus
one random future, the past plus another — by prefixing user ids, so one Spark job checks all three.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segments_lib.features.engine import FeatureSpec, build_features
from segments_lib.language.definitions import DurationPair

T = datetime(2026, 6, 1)
NAMES = ("Add to Cart", "Open App", "Purchase Completed", "Unlisted Event")
SPEC = FeatureSpec(
    event_names=NAMES[:3],
    windows=(timedelta(days=1), timedelta(days=7), timedelta(days=28)),
    past_window=timedelta(days=28),
    duration_pairs=(DurationPair("Add to Cart", "Purchase Completed", timedelta(hours=24)),),
    value_events=("Purchase Completed",),
    base_events=("Purchase Completed", "Open App"),  # the whole-history customer-base family too
)


def _events(hours: st.SearchStrategy[int]) -> st.SearchStrategy[list[tuple]]:
    event = st.tuples(
        st.sampled_from(["u0", "u1", "u2"]),
        st.sampled_from(NAMES),
        hours,
        st.one_of(st.none(), st.floats(min_value=0, max_value=500, allow_nan=False)),
    )
    return st.lists(event, max_size=25)


PAST = _events(st.integers(min_value=-40 * 24, max_value=-1))
FUTURE = _events(st.integers(min_value=0, max_value=3 * 24))  # 0 = exactly at T


def _rows(prefix: str, events: list[tuple]) -> list[tuple]:
    return [(f"{prefix}{user}", name, T + timedelta(hours=h), value) for user, name, h, value in events]


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(past=PAST, future_a=FUTURE, future_b=FUTURE)
def test_events_at_or_after_t_never_change_features_at_t(spark, past, future_a, future_b) -> None:
    rows = _rows("p:", past) + _rows("a:", past + future_a) + _rows("b:", past + future_b)
    if not rows:
        return
    events = spark.createDataFrame(rows, "user_id string, event_name string, event_time timestamp, event_value double")
    snaps = spark.createDataFrame([(T,)], "snapshot_time timestamp")
    out = build_features(events, snaps, SPEC).collect()
    variants: dict[str, dict[str, dict]] = {"p": {}, "a": {}, "b": {}}
    for row in out:
        prefix, user = row.user_id.split(":")
        variants[prefix][user] = {k: v for k, v in row.asDict().items() if k != "user_id"}
    expected = variants["p"]
    assert set(expected) == {user for user, _, _, _ in past}
    for name in ("a", "b"):
        got = variants[name]
        assert set(got) == set(expected), name
        for user, features in expected.items():
            different = {k: (v, got[user][k]) for k, v in features.items() if not _same(v, got[user][k])}
            assert not different, f"variant {name}, user {user}: features changed by future events: {different}"
