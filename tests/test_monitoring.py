"""Promise ledger, PSI drift, the N-nights flag, retrain triggers and churn: hand-computed on tiny data."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta

import pandas as pd
import pytest

from segments_lib.language.definitions import Absent, Occurs, SegmentDefinition
from segments_lib.promise.checks import Drift, drift_rows
from segments_lib.promise.drift import psi_against, psi_baseline
from segments_lib.promise.ledger import (
    BACKTEST_SCHEMA,
    ChurnStats,
    LevelPromise,
    backtest_rows,
    backtest_scored_date,
    consecutive_misses,
    default_level_columns,
    feature_psi,
    labels_for_membership,
    membership_churn,
    night_ledger,
    precision_flag,
    prediction_lower_bound,
    promise_kept_share,
    promises_from_choices,
    psi,
    retrain_triggers,
    top_drifting,
)
from tests.support.frames import assert_rows_equal

MEMBERSHIP_DDL = (
    "segment string, run_date date, user_id string, member_high boolean, member_medium boolean, "
    "member_low boolean, is_member boolean, control_group boolean"
)

S = date(2026, 5, 1)
D = date(2026, 5, 8)
PROMISES = {
    "high": LevelPromise(0.8, 0.6),
    "medium": LevelPromise(0.6, 0.45),
    "low": LevelPromise(0.4, 0.3),
}


def _membership(spark, rows):
    return spark.createDataFrame([("seg", S, *r) for r in rows], MEMBERSHIP_DDL)


@pytest.fixture()
def seven_users(spark):
    # user, high, medium, low, is_member (medium), control; labels below (u7 has none)
    membership = _membership(spark, [
        ("u1", True, True, True, True, False),
        ("u2", True, True, True, True, True),
        ("u3", False, True, True, True, False),
        ("u4", False, False, True, False, False),
        ("u5", False, False, False, False, False),
        ("u6", False, False, False, False, True),
        ("u7", False, False, True, False, False),
    ])
    labels = spark.createDataFrame(
        [("u1", 1), ("u2", 0), ("u3", 1), ("u4", 0), ("u5", 1), ("u6", 0)], "user_id string, label int"
    )
    return membership, labels


def test_backtest_rows_realized_precision_recall_and_control_rates(spark, seven_users) -> None:
    membership, labels = seven_users
    rows = {r.level: r for r in backtest_rows(membership, labels, PROMISES, S, D).collect()}
    assert sorted(rows) == ["high", "low", "medium"]
    # 6 labelled users, 3 positives (u1, u3, u5); u7 has no label and is left out everywhere.
    for r in rows.values():
        assert (r.segment, r.scored_date, r.evaluated_on) == ("seg", S, D)
        assert (r.eligible, r.positives, r.unlabeled, r.base_rate) == (6, 3, 1, 0.5)
    high, medium, low = rows["high"], rows["medium"], rows["low"]
    # high: u1 (treated, +), u2 (control, −)
    assert (high.members, high.true_positives, high.realized_precision) == (2, 1, 0.5)
    assert high.realized_recall == pytest.approx(1 / 3)
    assert (high.treated_members, high.treated_outcome_rate, high.control_members, high.control_outcome_rate) == (
        1, 1.0, 1, 0.0)
    assert (high.promised_precision, high.promised_lower_bound, high.meets_lower_bound) == (0.8, 0.6, False)
    # medium: u1 +, u2 − (control), u3 +
    assert (medium.members, medium.true_positives) == (3, 2)
    assert medium.realized_precision == pytest.approx(2 / 3)
    assert medium.realized_recall == pytest.approx(2 / 3)
    assert (medium.treated_members, medium.treated_outcome_rate, medium.control_members) == (2, 1.0, 1)
    assert medium.meets_lower_bound is True
    # low: u1 +, u2 − (control), u3 +, u4 −; u7 is a member but unlabeled
    assert (low.members, low.true_positives, low.realized_precision) == (4, 2, 0.5)
    assert (low.treated_members, low.control_members, low.control_outcome_rate) == (3, 1, 0.0)
    assert low.treated_outcome_rate == pytest.approx(2 / 3)
    assert low.meets_lower_bound is True


def test_backtest_schema_is_the_documented_contract(spark, seven_users) -> None:
    membership, labels = seven_users
    frame = backtest_rows(membership, labels, PROMISES, S, D)
    assert [(f.name, f.dataType) for f in frame.schema] == [(f.name, f.dataType) for f in BACKTEST_SCHEMA]
    assert all(f.metadata.get("comment") for f in frame.schema)


def test_level_without_members_or_bound_has_no_verdict(spark) -> None:
    membership = _membership(spark, [("a", False, True, True, True, False), ("b", False, False, True, False, False)])
    labels = spark.createDataFrame([("a", 0), ("b", 1)], "user_id string, label int")
    promises = {"high": LevelPromise(0.8, 0.7), "medium": LevelPromise(0.6, None)}
    rows = {r.level: r for r in backtest_rows(membership, labels, promises, S, D).collect()}
    assert (rows["high"].members, rows["high"].realized_precision, rows["high"].meets_lower_bound) == (0, None, None)
    assert rows["high"].treated_outcome_rate is None and rows["high"].control_outcome_rate is None
    assert (rows["medium"].members, rows["medium"].realized_precision) == (1, 0.0)
    assert rows["medium"].promised_lower_bound is None and rows["medium"].meets_lower_bound is None


def test_custom_level_reads_is_member(spark) -> None:
    columns = default_level_columns(["high", "medium", "low", "p65"], "p65")
    assert columns == {"high": "member_high", "medium": "member_medium", "low": "member_low", "p65": "is_member"}
    membership = _membership(spark, [("a", False, False, True, True, False), ("b", False, False, True, False, False)])
    labels = spark.createDataFrame([("a", 1), ("b", 1)], "user_id string, label int")
    (row,) = backtest_rows(membership, labels, {"p65": LevelPromise(0.65, 0.5)}, S, D, columns).collect()
    assert (row.level, row.members, row.true_positives, row.realized_recall, row.meets_lower_bound) == (
        "p65", 1, 1, 0.5, True)


def test_missing_member_column_is_named(spark) -> None:
    membership = _membership(spark, [("a", False, False, True, True, False)])
    labels = spark.createDataFrame([("a", 1)], "user_id string, label int")
    with pytest.raises(ValueError, match="member_p65"):
        backtest_rows(membership, labels, {"p65": LevelPromise(0.65, 0.5)}, S, D)


@pytest.mark.parametrize(("horizon", "expected"), [
    (timedelta(days=7), date(2026, 5, 13)),
    (timedelta(days=8), date(2026, 5, 12)),  # 7d sequence target + 24h follow-up
    (timedelta(days=7, hours=12), date(2026, 5, 12)),  # D − 7 would still be open until noon
])
def test_scored_date_is_the_newest_closed_window(horizon: timedelta, expected: date) -> None:
    assert backtest_scored_date(date(2026, 5, 20), horizon) == expected


def test_labels_for_membership_use_the_half_open_window(spark) -> None:
    membership = _membership(spark, [(u, False, False, False, False, False) for u in ("a", "b", "c")])
    events = spark.createDataFrame([
        ("a", "Purchase Completed", datetime(2026, 5, 1, 0, 0), None),  # at T: inside
        ("b", "Purchase Completed", datetime(2026, 4, 30, 23, 59), None),  # before T: outside
        ("c", "Purchase Completed", datetime(2026, 5, 8, 0, 0), None),  # at T + 7d: outside
    ], "user_id string, event_name string, event_time timestamp, event_value double")
    occurs = labels_for_membership(events, membership, Occurs(("Purchase Completed",)), timedelta(days=7))
    assert_rows_equal(occurs, [("a", 1), ("b", 0), ("c", 0)])
    absent = labels_for_membership(events, membership, Absent(("Purchase Completed",)), timedelta(days=7))
    assert_rows_equal(absent, [("a", 0), ("b", 1), ("c", 1)])


def _ledger(verdicts: list[bool | None], segment: str = "seg", level: str = "high") -> pd.DataFrame:
    return pd.DataFrame({
        "segment": segment, "level": level,
        "evaluated_on": [date(2026, 5, 1) + timedelta(days=i) for i in range(len(verdicts))],
        "meets_lower_bound": pd.Series(verdicts, dtype=object),
    })


def test_streak_is_broken_by_a_good_night_and_skips_nights_without_members() -> None:
    # nights 05-01 … 05-06: miss, miss, good, miss, no members, miss
    ledger = pd.concat([_ledger([False, False, True, False, None, False]),
                        _ledger([False] * 6, segment="other"), _ledger([False] * 6, level="low")])
    assert consecutive_misses(ledger, "seg", "high") == 2
    assert precision_flag(ledger, "seg", "high", nights=2) is True
    assert precision_flag(ledger, "seg", "high", nights=3) is False
    assert consecutive_misses(ledger, "seg", "high", as_of=date(2026, 5, 2)) == 2
    assert consecutive_misses(ledger, "seg", "high", as_of=date(2026, 5, 3)) == 0
    assert consecutive_misses(ledger, "other", "high") == 6
    assert consecutive_misses(ledger, "seg", "medium") == 0  # no ledger rows at all


def test_flag_reads_a_spark_ledger_too(spark) -> None:
    rows = [("seg", "high", date(2026, 5, 1) + timedelta(days=i), v) for i, v in enumerate([True, False, None, False])]
    ledger = spark.createDataFrame(rows, "segment string, level string, evaluated_on date, meets_lower_bound boolean")
    assert consecutive_misses(ledger, "seg", "high") == 2
    assert precision_flag(ledger, "seg", "high", nights=2) is True
    assert precision_flag(ledger, "seg", "high", nights=2, as_of=date(2026, 5, 3)) is False
    with pytest.raises(ValueError, match="backtest_flag_nights"):
        precision_flag(ledger, "seg", "high", nights=0)


def test_retrain_triggers() -> None:
    assert retrain_triggers(0.31, 0.25, flagged=False) == ["score PSI 0.310 > 0.25"]
    assert retrain_triggers(0.25, 0.25, flagged=False) == []  # strictly above
    assert retrain_triggers(None, 0.25, flagged=False) == []
    assert retrain_triggers(0.05, 0.25, flagged=True, flag_nights=3) == [
        "realized precision below the promised lower bound for 3 nights in a row"]
    assert len(retrain_triggers(0.4, 0.25, flagged=True)) == 2


def test_psi_of_identical_distributions_is_zero() -> None:
    values = [0.1, 0.2, 0.2, 0.5, 0.7, 0.9, None]
    assert psi(values, values, bins=4) == 0.0


def test_psi_two_bins_hand_computed() -> None:
    # expected [1,2,3,4]: median cut 2 → (≤2, >2) = 50/50; actual 8 of 10 at ≤2 → 80/20
    # (0.8−0.5)·ln(0.8/0.5) + (0.2−0.5)·ln(0.2/0.5) = 0.141001 + 0.274887
    actual = [1, 1, 1, 1, 2, 2, 2, 2, 3, 4]
    assert psi([1, 2, 3, 4], actual, bins=2) == pytest.approx(0.415888, abs=1e-6)


def test_psi_nulls_are_their_own_bin_and_empty_bins_use_epsilon() -> None:
    # cut 1 from [1, 2]; expected (≤1, >1, null) = .25/.25/.5, actual = .25/.5/.25
    # 0 + .25·ln 2 − .25·ln .5 = 0.346574
    assert psi([1, 2, None, None], [1, 2, 2, None], bins=2) == pytest.approx(0.346574, abs=1e-6)
    # actual all ≤2: the empty bin's share becomes 1e-4 → .5·ln 2 + (1e-4 − .5)·ln(1e-4/.5) = 4.604319
    assert psi([1, 2, 3, 4], [1, 2], bins=2) == pytest.approx(4.604319, abs=1e-6)


def test_feature_psi_bins_every_column_in_one_pass(spark) -> None:
    baseline = spark.createDataFrame([(1.0, 1.0), (2.0, 2.0), (3.0, None), (4.0, None)], "x double, y double")
    current = spark.createDataFrame(
        [(1.0, 1.0), (1.0, 2.0), (1.0, 2.0), (1.0, None), (2.0, 1.0),
         (2.0, 2.0), (2.0, 2.0), (2.0, None), (3.0, None), (4.0, None)], "x double, y double")
    result = dict(feature_psi(baseline, current, ["x", "y"], bins=2, relative_error=0.0))
    assert result["x"] == pytest.approx(0.415888, abs=1e-6)
    # y: cut 1; expected (≤1, >1, null) = .25/.25/.5; actual = .2/.4/.4
    # (.2−.25)ln(.8) + (.4−.25)ln(1.6) + (.4−.5)ln(.8) = .011157 + .070501 + .022314
    assert result["y"] == pytest.approx(0.103972, abs=1e-6)
    assert psi(baseline, current, bins=2, column="x") == pytest.approx(0.415888, abs=1e-6)


def test_stored_baseline_round_trips_through_json(spark) -> None:
    baseline = spark.createDataFrame([(1.0, 0.1), (2.0, 0.2), (3.0, None), (4.0, 0.4)], "x double, score double")
    stored = psi_baseline(baseline, ["x", "score"], bins=2, relative_error=0.0)
    # x: median cut 2 → (≤2, >2, null) = 2/2/0; score: cut 0.2 over the three non-null → 2/1/1
    assert stored == {"bins": 2, "columns": {"x": {"cuts": [2.0], "counts": [2.0, 2.0, 0.0]},
                                             "score": {"cuts": [0.2], "counts": [2.0, 1.0, 1.0]}}}
    restored = json.loads(json.dumps(stored))
    current = spark.createDataFrame([(float(v), 0.1) for v in (1, 1, 1, 1, 2, 2, 2, 2, 3, 4)], "x double, score double")
    assert dict(psi_against(restored, current, ["x"]))["x"] == pytest.approx(0.415888, abs=1e-6)
    with pytest.raises(ValueError, match=r"no column\(s\) \['y'\]"):
        psi_against(restored, current, ["y"])


def test_drift_rows_rank_features_and_keep_the_score_apart(spark) -> None:
    result = Drift(0.05, "c=0.300, a=0.100", (("a", 0.1), ("b", math.nan), ("c", 0.3)))
    rows = drift_rows(spark, "seg", D, 3, result).collect()
    assert [(r.column_name, r.is_score, r.psi, r.drift_rank) for r in rows] == [
        ("score", True, 0.05, None), ("c", False, 0.3, 1), ("a", False, 0.1, 2), ("b", False, None, 3)]
    assert {(r.run_date, r.segment, r.model_version) for r in rows} == {(D, "seg", 3)}


def test_feature_psi_rejects_text_columns(spark) -> None:
    frame = spark.createDataFrame([("a", 1.0)], "name string, x double")
    with pytest.raises(ValueError, match=r"\['name'\] are not numeric"):
        feature_psi(frame, frame, ["name", "x"])


def test_top_drifting_orders_and_skips_nan() -> None:
    psis = [("a", 0.1), ("b", 0.5), ("c", math.nan), ("d", 0.3)]
    assert top_drifting(psis, n=2) == "b=0.500, d=0.300"
    assert top_drifting([]) == ""


def test_membership_churn_entered_exited_jaccard(spark) -> None:
    ddl = "user_id string, is_member boolean"
    previous = spark.createDataFrame([("a", True), ("b", True), ("c", True), ("d", False)], ddl)
    current = spark.createDataFrame([("a", False), ("b", True), ("c", True), ("d", True), ("e", True)], ddl)
    # entered d, e; exited a; stayed b, c; Jaccard 2 / 5
    assert membership_churn(previous, current) == ChurnStats(entered=2, exited=1, stayed=2, jaccard=0.4)
    assert membership_churn(None, current) == ChurnStats(entered=4, exited=0, stayed=0, jaccard=None)
    nobody = spark.createDataFrame([("a", False)], ddl)
    assert membership_churn(nobody, nobody) == ChurnStats(0, 0, 0, 1.0)


def test_promise_kept_share_counts_only_judged_nights() -> None:
    ledger = pd.concat([_ledger([True, False, True, None]), _ledger([None, None], level="low")])
    summary = promise_kept_share(ledger).set_index("level")
    # high: 3 judged nights, 2 kept → 2/3; one night without members
    assert summary.loc["high", ["nights_judged", "nights_kept", "nights_without_verdict"]].tolist() == [3, 2, 1]
    assert summary.loc["high", "share_kept"] == pytest.approx(2 / 3)
    assert summary.loc["low", "nights_judged"] == 0 and math.isnan(summary.loc["low", "share_kept"])


def test_prediction_bound_widens_for_small_nights(spark) -> None:
    from pyspark.sql import functions as F

    # Holdout evidence 80 of 100: p = 80.5 / 101; variance p(1 − p)(1/100 + 1/m); z(0.95) = 1.6448536.
    bounds = spark.createDataFrame([(50,), (3,), (0,)], "m int").select(
        "m", prediction_lower_bound(80, 100, F.col("m"), 0.95).alias("bound")).collect()
    by_m = {r.m: r.bound for r in bounds}
    assert by_m[50] == pytest.approx(0.682441, abs=1e-6)
    assert by_m[3] == pytest.approx(0.409381, abs=1e-6)
    assert by_m[0] is None


def test_ledger_bound_uses_the_evidence_and_tonights_members(spark, seven_users) -> None:
    membership, labels = seven_users
    promises = {"medium": LevelPromise(0.6, 0.57, evidence_members=100, evidence_true_positives=80),
                "high": LevelPromise(0.8, None, evidence_members=100, evidence_true_positives=80)}
    rows = {r.level: r for r in backtest_rows(membership, labels, promises, S, D).collect()}
    # medium has 3 members (u1 +, u2 −, u3 +): bound 0.409381 from the hand computation above; 2/3 >= it.
    assert rows["medium"].promised_lower_bound == pytest.approx(0.409381, abs=1e-6)
    assert rows["medium"].meets_lower_bound is True
    # An unreachable level promised nothing, evidence or not.
    assert rows["high"].promised_lower_bound is None and rows["high"].meets_lower_bound is None


def test_promises_from_choices_read_out_of_fold_evidence_or_fall_back_to_the_holdout() -> None:
    choices = {
        "medium": {"target_precision": 0.6, "threshold": 0.41, "precision_lower": 0.57, "expected_precision": 0.7,
                   "holdout_members": 200, "promise_members": 190, "promise_true_positives": 120},
        "low": {"target_precision": 0.4, "threshold": 0.2, "precision_lower": 0.45, "expected_precision": 0.5,
                "holdout_members": 300},  # a model trained before out-of-fold counts were recorded
    }
    promises = promises_from_choices(choices, confidence=0.9)
    assert promises["medium"] == LevelPromise(0.6, 0.57, 190, 120, 0.9)
    assert promises["low"] == LevelPromise(0.4, 0.45, 300, 150, 0.9)


def test_promises_from_choices_drop_the_bound_of_unreachable_levels() -> None:
    choices = {
        "high": {"target_precision": 0.8, "threshold": None, "precision_lower": None},
        "medium": {"target_precision": 0.6, "threshold": 0.41, "precision_lower": 0.57},
    }
    assert promises_from_choices(choices) == {"high": LevelPromise(0.8, None), "medium": LevelPromise(0.6, 0.57)}
    with pytest.raises(ValueError, match="'low' lacks 'target_precision'"):
        promises_from_choices({"low": {"threshold": 0.1}})


def test_night_ledger_evaluates_the_newest_closed_run_date(spark) -> None:
    segment = SegmentDefinition(name="seg", kind="conversion", target=Occurs(("Purchase Completed",)),
                                past_window=timedelta(days=28), prediction_window=timedelta(days=7))
    membership = spark.createDataFrame([
        ("seg", S, "a", False, True, True, True, False),
        ("seg", S, "b", False, True, True, True, False),
        ("seg", date(2026, 5, 2), "c", False, True, True, True, False),  # window still open on 05-08
        ("other", S, "d", False, True, True, True, False),
    ], MEMBERSHIP_DDL)
    events = spark.createDataFrame(
        [(user, "Purchase Completed", datetime(2026, 5, 3), None) for user in ("a", "c")],
        "user_id string, event_name string, event_time timestamp, event_value double")
    promises = {"medium": LevelPromise(0.6, 0.4)}
    (row,) = night_ledger(events, membership, segment, promises, evaluated_on=D).collect()
    assert (row.scored_date, row.evaluated_on, row.members, row.true_positives, row.realized_precision) == (
        S, D, 2, 1, 0.5)
    assert row.meets_lower_bound is True
    assert night_ledger(events, membership, segment, promises, evaluated_on=date(2026, 5, 20)).count() == 0
