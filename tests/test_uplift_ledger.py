"""The uplift ledger: realised uplift per level of one closed night, hand-computed on twelve users."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from segments_lib.language.definitions import Occurs, SegmentDefinition, Treatment
from segments_lib.model.uplift_metrics import difference_interval
from segments_lib.promise.uplift_ledger import (
    UPLIFT_LEDGER_COLUMNS,
    UPLIFT_LEDGER_SCHEMA,
    UpliftPromise,
    promises_from_json,
    uplift_night_ledger,
)

S = date(2026, 5, 1)
D = S + timedelta(days=7)  # the 7d outcome window of S closes at D 00:00
T = datetime(2026, 5, 1)  # S 00:00 UTC, the snapshot of the membership
SEND, BUY = "Campaign Sent", "Purchase Completed"

SEGMENT = SegmentDefinition(
    name="upl", kind="uplift", target=Occurs((BUY,)), past_window=timedelta(days=28),
    prediction_window=timedelta(days=7), precision_level="medium",
    treatment=Treatment(events=(SEND,), window=timedelta(days=1)),
)
PROMISES = {
    "high": UpliftPromise(share=0.25, threshold=0.05, uplift=0.4, uplift_lower=0.05),
    "medium": UpliftPromise(share=0.5, threshold=0.02, uplift=0.3, uplift_lower=0.1),
    "low": UpliftPromise(share=0.75, threshold=0.01, uplift=0.2, uplift_lower=0.4),
}

MEMBERSHIP_DDL = (
    "segment string, run_date date, user_id string, score double, member_high boolean, member_medium boolean, "
    "member_low boolean, is_member boolean, model_version int, control_group boolean"
)
EVENTS_DDL = "user_id string, event_name string, event_time timestamp, event_value double"


def _member(user: str, score: float, high: bool, medium: bool, low: bool, segment: str = "upl", run_date: date = S,
            version: int = 3) -> tuple[object, ...]:
    # is_member is the segment's own level, medium
    return (segment, run_date, user, score, high, medium, low, medium, version, False)


@pytest.fixture(scope="module")
def night(spark):
    """Twelve users of (upl, S) by descending predicted uplift, plus two rows that must be ignored.

    Levels: high u1-u3, medium u1-u6, low u1-u9, non-members u10-u12.
    Treated (a send in [S, S + 1d)): u1 u2 u3 u4 u7 u10. u6's send at S + 1d and u8's at S − 1h miss the window.
    Converted (a purchase in [S, S + 7d)): u1 u2 u4 u5 u10 u11. u6 buys at S + 7d and u12 before S: outside.
    """
    membership = spark.createDataFrame([
        _member("u1", 0.30, True, True, True), _member("u2", 0.25, True, True, True),
        _member("u3", 0.20, True, True, True), _member("u4", 0.15, False, True, True),
        _member("u5", 0.12, False, True, True), _member("u6", 0.10, False, True, True),
        _member("u7", 0.08, False, False, True), _member("u8", 0.06, False, False, True),
        _member("u9", 0.05, False, False, True), _member("u10", 0.02, False, False, False),
        _member("u11", 0.01, False, False, False), _member("u12", -0.01, False, False, False),
        # Treated converters that would change every count if they were read.
        _member("u13", 0.40, True, True, True, run_date=S + timedelta(days=1), version=2),
        _member("u14", 0.40, True, True, True, segment="other"),
    ], MEMBERSHIP_DDL)
    sends = [(u, SEND, T, None) for u in ("u1", "u2", "u3", "u4", "u7", "u10", "u14")]
    sends += [("u6", SEND, T + timedelta(days=1), None), ("u8", SEND, T - timedelta(hours=1), None),
              ("u13", SEND, T + timedelta(days=1), None)]
    buys = [(u, BUY, T + timedelta(days=d), 10.0) for u, d in (("u1", 2), ("u4", 1), ("u5", 1), ("u10", 3),
                                                               ("u11", 5), ("u13", 2), ("u14", 2))]
    buys += [("u2", BUY, T + timedelta(days=6, hours=23), 10.0), ("u6", BUY, T + timedelta(days=7), 10.0),
             ("u12", BUY, T - timedelta(days=1), 10.0)]
    events = spark.createDataFrame(sends + buys, EVENTS_DDL)
    return events, membership


@pytest.fixture(scope="module")
def ledger(night):
    events, membership = night
    return {r.level: r for r in uplift_night_ledger(events, membership, SEGMENT, PROMISES, evaluated_on=D).collect()}


def test_the_ledger_has_the_documented_schema_and_one_row_per_level_then_all(night) -> None:
    events, membership = night
    frame = uplift_night_ledger(events, membership, SEGMENT, PROMISES, evaluated_on=D)
    assert frame.schema == UPLIFT_LEDGER_SCHEMA
    assert frame.columns == [name for name, _, _ in UPLIFT_LEDGER_COLUMNS] == [
        "evaluated_on", "scored_date", "segment", "level", "model_version", "members", "treated_members",
        "treated_conversions", "control_members", "control_conversions", "treated_rate", "control_rate",
        "realised_uplift", "uplift_lower", "uplift_upper", "incremental_conversions", "promised_uplift",
        "promised_lower", "meets_lower_bound"]
    rows = frame.collect()
    assert [r.level for r in rows] == ["high", "medium", "low", "all"]
    # Only the (upl, S) slice: u13 (S + 1, version 2) and u14 (another segment) are not read.
    assert {(r.evaluated_on, r.scored_date, r.segment, r.model_version) for r in rows} == {(D, S, "upl", 3)}


def test_medium_level_realised_uplift_interval_and_kept_promise(ledger) -> None:
    r = ledger["medium"]
    # treated u1 u2 u3 u4 → converted u1 u2 u4: 3 / 4; control u5 u6 → converted u5: 1 / 2 (u6 at S + 7d is out)
    assert (r.members, r.treated_members, r.treated_conversions, r.control_members, r.control_conversions) == (
        6, 4, 3, 2, 1)
    assert (r.treated_rate, r.control_rate, r.realised_uplift) == (0.75, 0.5, 0.25)
    lower, upper = difference_interval(3, 4, 1, 2)
    assert (r.uplift_lower, r.uplift_upper) == pytest.approx((lower, upper))
    assert (r.uplift_lower, r.uplift_upper) == pytest.approx((-0.35525, 0.70408), abs=1e-5)
    assert r.incremental_conversions == pytest.approx(0.25 * 6)  # 1.5 more conversions if all six were sent
    # 0.25 ≥ the promised lower bound 0.1
    assert (r.promised_uplift, r.promised_lower, r.meets_lower_bound) == (0.3, 0.1, True)


def test_low_level_misses_its_promise(ledger) -> None:
    r = ledger["low"]
    # treated u1 u2 u3 u4 u7 → 3 / 5; control u5 u6 u8 u9 → 1 / 4 (u8's send before S does not count)
    assert (r.members, r.treated_members, r.treated_conversions, r.control_members, r.control_conversions) == (
        9, 5, 3, 4, 1)
    assert (r.treated_rate, r.control_rate) == (0.6, 0.25)
    assert r.realised_uplift == pytest.approx(0.35)
    assert (r.uplift_lower, r.uplift_upper) == pytest.approx(difference_interval(3, 5, 1, 4))
    assert (r.uplift_lower, r.uplift_upper) == pytest.approx((-0.23162, 0.69860), abs=1e-5)
    assert r.incremental_conversions == pytest.approx(0.35 * 9)
    # 0.35 < the promised lower bound 0.4
    assert (r.promised_uplift, r.promised_lower, r.meets_lower_bound) == (0.2, 0.4, False)


def test_a_level_without_control_members_has_null_rates_and_no_verdict(ledger) -> None:
    r = ledger["high"]
    # u1 u2 u3 all treated, u1 u2 converted (u2 at S + 6d 23h, just inside); no one to compare with
    assert (r.members, r.treated_members, r.treated_conversions, r.control_members, r.control_conversions) == (
        3, 3, 2, 0, 0)
    assert r.treated_rate == pytest.approx(2 / 3)
    assert (r.control_rate, r.realised_uplift, r.uplift_lower, r.uplift_upper, r.incremental_conversions) == (
        None, None, None, None, None)
    assert (r.promised_uplift, r.promised_lower, r.meets_lower_bound) == (0.4, 0.05, None)


def test_the_all_row_is_every_scored_user_with_nothing_promised(ledger) -> None:
    r = ledger["all"]
    # treated u1 u2 u3 u4 u7 u10 → converted u1 u2 u4 u10: 4 / 6; control u5 u6 u8 u9 u11 u12 → u5 u11: 2 / 6
    assert (r.members, r.treated_members, r.treated_conversions, r.control_members, r.control_conversions) == (
        12, 6, 4, 6, 2)
    assert (r.treated_rate, r.control_rate) == pytest.approx((4 / 6, 2 / 6))
    assert r.realised_uplift == pytest.approx(1 / 3)
    assert (r.uplift_lower, r.uplift_upper) == pytest.approx(difference_interval(4, 6, 2, 6))
    assert (r.uplift_lower, r.uplift_upper) == pytest.approx((-0.18522, 0.66788), abs=1e-5)
    assert r.incremental_conversions == pytest.approx(4.0)  # 1/3 × 12
    assert (r.promised_uplift, r.promised_lower, r.meets_lower_bound) == (None, None, None)


def test_an_unscored_night_gives_an_empty_ledger(night) -> None:
    events, membership = night
    frame = uplift_night_ledger(events, membership, SEGMENT, PROMISES, evaluated_on=date(2026, 5, 20))
    assert frame.schema == UPLIFT_LEDGER_SCHEMA
    assert frame.count() == 0


def test_a_segment_without_treatment_or_a_promise_without_column_is_refused(night) -> None:
    events, membership = night
    propensity = SegmentDefinition(name="buyers", kind="conversion", target=Occurs((BUY,)),
                                   past_window=timedelta(days=28), prediction_window=timedelta(days=7))
    with pytest.raises(ValueError, match="segment 'buyers' has no treatment"):
        uplift_night_ledger(events, membership, propensity, PROMISES, evaluated_on=D)
    with pytest.raises(ValueError, match=r"level\(s\) \['low'\] without a membership column"):
        uplift_night_ledger(events, membership, SEGMENT, PROMISES, evaluated_on=D,
                            level_columns={"high": "member_high", "medium": "is_member"})
    with pytest.raises(ValueError, match=r"missing column\(s\) \['member_top'\]"):
        uplift_night_ledger(events, membership, SEGMENT, {}, evaluated_on=D, level_columns={"top": "member_top"})
    with pytest.raises(ValueError, match="'all' is reserved"):
        uplift_night_ledger(events, membership, SEGMENT, {}, evaluated_on=D, level_columns={"all": "is_member"})


def test_promises_from_json_reads_the_uplift_thresholds_file() -> None:
    choices = {
        "high": {"share": 0.1, "threshold": 0.04, "uplift": 0.08, "uplift_lower": 0.02, "members": 120},
        "medium": {"share": 0.3, "threshold": None, "uplift": None, "uplift_lower": None},  # unreachable
    }
    assert promises_from_json(choices) == {
        "high": UpliftPromise(share=0.1, threshold=0.04, uplift=0.08, uplift_lower=0.02),
        "medium": UpliftPromise(share=0.3, threshold=None, uplift=None, uplift_lower=None),
    }
    with pytest.raises(ValueError, match="level 'low' lacks 'uplift_lower'"):
        promises_from_json({"low": {"share": 0.5, "threshold": 0.01, "uplift": 0.03}})
    with pytest.raises(ValueError, match="level 'low' lacks 'share'"):
        promises_from_json({"low": {"threshold": 0.01, "uplift": 0.03, "uplift_lower": 0.0}})
    with pytest.raises(ValueError, match="level 'low' must be a mapping with keys"):
        promises_from_json({"low": 0.5})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="level 'low': 'uplift' must be a number"):
        promises_from_json({"low": {"share": 0.5, "threshold": 0.01, "uplift": "high", "uplift_lower": 0.0}})
    with pytest.raises(ValueError, match=r"level 'low': 'share' must be in \(0, 1\]"):
        promises_from_json({"low": {"share": 1.5, "threshold": 0.01, "uplift": 0.03, "uplift_lower": 0.0}})
