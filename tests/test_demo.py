"""Demo generator: contract, determinism, real signal, and ground truth that matches what happens."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest

from segments_lib.intake import demo
from segments_lib.intake.events import EVENT_SCHEMA

END = date(2026, 6, 1)
DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return demo.generate_events(users=2000, days=60, end_date=END, seed=11).to_pandas()


def test_events_follow_the_contract_inside_the_history() -> None:
    table = demo.generate_events(users=300, days=20, end_date=END, seed=3)
    frame = table.to_pandas()
    assert table.schema.names == ["user_id", "event_name", "event_time", "event_value", "event_date"]
    assert set(frame.event_name) <= set(demo.EVENT_NAMES) and frame.event_name.nunique() >= 11
    assert frame.event_time.min() >= pd.Timestamp("2026-05-12", tz="UTC")
    assert frame.event_time.max() < pd.Timestamp("2026-06-01", tz="UTC")
    assert (frame.event_time.dt.date == frame.event_date).all()
    purchases = frame[frame.event_name == "Purchase Completed"]
    assert len(purchases) > 0 and (purchases.event_value > 0).all()
    assert frame[frame.event_name == "Open App"].event_value.isna().all()


def test_same_seed_gives_identical_events_and_another_seed_does_not() -> None:
    first = demo.generate_events(users=300, days=15, end_date=END, seed=5)
    again = demo.generate_events(users=300, days=15, end_date=END, seed=5)
    other = demo.generate_events(users=300, days=15, end_date=END, seed=6)
    assert first.equals(again)
    assert not first.equals(other)


def test_users_join_over_time_and_weekends_are_busier(history: pd.DataFrame) -> None:
    first_seen = history.groupby("user_id").event_time.min()
    assert (first_seen > pd.Timestamp("2026-04-15", tz="UTC")).mean() > 0.15  # joined in the last 6 weeks
    sessions = history[history.event_name == "Open App"]
    per_weekday = sessions.groupby(sessions.event_time.dt.weekday).size()
    assert per_weekday[5] > per_weekday[1] * 1.05  # Saturday over Tuesday, by the generator's weekday factor


def test_recent_purchasers_buy_again_more_often(history: pd.DataFrame) -> None:
    snapshot = pd.Timestamp("2026-05-18", tz="UTC")
    past = history[(history.event_time < snapshot) & (history.event_time >= snapshot - 28 * DAY)]
    active = set(past.user_id)
    recent_buyers = set(past[(past.event_name == "Purchase Completed") & (past.event_time >= snapshot - 14 * DAY)]
                        .user_id)
    next_week = history[(history.event_time >= snapshot) & (history.event_time < snapshot + 7 * DAY)]
    buyers_next_week = set(next_week[next_week.event_name == "Purchase Completed"].user_id)
    others = active - recent_buyers
    assert len(recent_buyers) > 100 and len(others) > 500
    repeat_rate = len(recent_buyers & buyers_next_week) / len(recent_buyers)
    other_rate = len(others & buyers_next_week) / len(others)
    assert repeat_rate > 2 * other_rate


def test_ground_truth_covers_every_segment_and_matches_realised_rates(history: pd.DataFrame) -> None:
    snapshots = [date(2026, 5, 11), date(2026, 5, 18)]
    truth = demo.ground_truth(users=2000, days=60, end_date=END, seed=11, snapshot_dates=snapshots,
                              replicas=64).to_pandas()
    assert set(truth.segment) == set(demo.DEMO_SEGMENTS)
    assert set(truth.snapshot_date) == set(snapshots)
    assert truth.true_probability.between(0.0, 1.0).all()
    assert not truth.duplicated(["segment", "snapshot_date", "user_id"]).any()

    snapshot = pd.Timestamp(snapshots[1], tz="UTC")
    past = history[(history.event_time < snapshot) & (history.event_time >= snapshot - 28 * DAY)]
    active = sorted(set(past.user_id))
    week = history[(history.event_time >= snapshot) & (history.event_time < snapshot + 7 * DAY)]
    fortnight = history[(history.event_time >= snapshot) & (history.event_time < snapshot + 14 * DAY)]
    realised = {
        "likely_to_purchase": set(week[week.event_name == "Purchase Completed"].user_id),
        "engagement_booster": set(week[week.event_name == "Click Notification"].user_id),
        "churn_risk": set(active) - set(fortnight[fortnight.event_name.isin(demo.ACTIVITY_EVENTS)].user_id),
    }
    at_snapshot = truth[truth.snapshot_date == snapshots[1]]
    for segment, positives in realised.items():
        p = at_snapshot[at_snapshot.segment == segment].set_index("user_id").true_probability.reindex(active)
        hit = pd.Series([u in positives for u in active], index=active)
        assert p.notna().all()
        assert abs(p.mean() - hit.mean()) < 0.04, segment
        # The truth ranks users: the likelier half meets the target far more often than the other half.
        likely = p >= p.median()
        assert hit[likely].mean() > 2 * hit[~likely].mean(), segment


def test_ground_truth_rejects_dates_outside_the_history() -> None:
    with pytest.raises(ValueError, match=r"outside the history \(2026-05-22 .. 2026-06-01\)"):
        demo.ground_truth(users=50, days=10, end_date=END, snapshot_dates=[date(2026, 5, 1)])


def test_job_writes_delta_tables_spark_reads_in_the_contract(spark, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs import generate_demo_events
    from segments_lib.store import tables

    monkeypatch.setenv("SEGMENTS_WORKSPACE", str(tmp_path / "ws"))
    argv = ["--users", "200", "--days", "12", "--seed", "4", "--truth-days", "2", "--replicas", "8"]
    assert generate_demo_events.main(argv) == 0
    assert generate_demo_events.main(argv) == 0  # a re-run overwrites: same rows, not twice as many

    events = tables.read_delta(spark, tmp_path / "ws" / "tables" / "events")
    assert events.schema == EVENT_SCHEMA
    expected = demo.generate_events(users=200, days=12, end_date=END, seed=4)
    assert events.count() == expected.num_rows
    first = events.orderBy("event_time", "user_id", "event_name").first()
    assert first.event_time >= datetime(2026, 5, 20)
    truth = tables.read_delta(spark, tmp_path / "ws" / "tables" / "demo_ground_truth")
    assert sorted(r.segment for r in truth.select("segment").distinct().collect()) == sorted(demo.DEMO_SEGMENTS)
    assert sorted(r.snapshot_date for r in truth.select("snapshot_date").distinct().collect()) == [
        date(2026, 5, 31), date(2026, 6, 1)]
