"""The feature pass shuffles exactly once: one hash exchange on user_id, for any spec and any K snapshots.

The broadcast exchanges of the tiny snapshots frame ship one small table to every task; they move no
event rows between tasks, so they are not shuffles. AQE is off in the test session (conftest), so the
executed plan is the static one.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from segments_lib.features.engine import FeatureSpec, build_features
from segments_lib.language.definitions import DurationPair

T = datetime(2026, 6, 1)
DAY = timedelta(days=1)


def executed_plan(spark, spec: FeatureSpec, snapshots: int) -> str:
    events = spark.createDataFrame(
        [("u", spec.event_names[0], T - DAY, 1.0)],
        "user_id string, event_name string, event_time timestamp, event_value double",
    )
    snaps = spark.createDataFrame([(T - k * 7 * DAY,) for k in range(snapshots)], "snapshot_time timestamp")
    return build_features(events, snaps, spec)._jdf.queryExecution().executedPlan().toString()


def spec_with(n_events: int, windows_days: tuple[int, ...], n_pairs: int) -> FeatureSpec:
    names = tuple(f"Event {i}" for i in range(n_events))
    pairs = tuple(DurationPair(names[i], names[(i + 1) % n_events], timedelta(hours=24)) for i in range(n_pairs))
    windows = tuple(timedelta(days=d) for d in windows_days)
    return FeatureSpec(
        event_names=names, windows=windows, past_window=windows[-1], duration_pairs=pairs, value_events=names[:2],
        base_events=names[:1],
    )


@pytest.mark.parametrize(
    ("n_events", "windows_days", "n_pairs", "snapshots"),
    [
        (1, (28,), 0, 1),
        (3, (1, 7, 28), 1, 1),
        (12, (1, 3, 7, 14, 28), 3, 1),
        (25, (1, 7, 90), 2, 4),  # 90 days of active-day bits: two bit_or blocks
        (5, (7, 28), 0, 4),
    ],
)
def test_exactly_one_shuffle_a_hash_exchange_on_user_id(
    spark, n_events: int, windows_days: tuple[int, ...], n_pairs: int, snapshots: int
) -> None:
    plan = executed_plan(spark, spec_with(n_events, windows_days, n_pairs), snapshots)
    exchanges = re.findall(r"(\w*Exchange \S+)", plan)
    shuffles = [e for e in exchanges if not e.startswith("BroadcastExchange")]
    assert len(shuffles) == 1, plan
    assert re.fullmatch(r"Exchange hashpartitioning\(user_id#\d+,", shuffles[0]), plan  # on user_id alone
    for forbidden in ("SortMergeJoin", "ShuffledHashJoin", "CartesianProduct", "SortAggregate", "ObjectHashAggregate"):
        assert forbidden not in plan, f"{forbidden} in plan:\n{plan}"
    assert plan.count("BroadcastNestedLoopJoin") == 1  # bins with snapshots; events are never paired
    # one sort per ordering of the timeline (per type for gaps, per user backwards for "next B"), whatever K
    assert plan.count("Sort [") == (2 if n_pairs else 1), plan
