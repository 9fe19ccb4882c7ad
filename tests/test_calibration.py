"""Precision levels: bounds, the cumulative table, the curve, thresholds per level, tiers and the calibrator.

Expected numbers are worked out by hand in the comments. Clopper–Pearson lower bounds that have no
closed form are checked against the defining binomial tail, computed here with `math.comb`:
the one-sided 95 % lower bound L for tp of n satisfies P(X >= tp | n, L) = 0.05.
"""

from __future__ import annotations

import itertools
import math

import pandas as pd
import pytest
from pyspark.ml import PipelineModel
from pyspark.sql import functions as F

from segments_lib.promise.calibration import (
    STATUS_OK,
    STATUS_UNREACHABLE,
    ThresholdChoice,
    choose_thresholds,
    counts_at,
    expected_sizes,
    fit_calibrator,
    interpolated_isotonic,
    isotonic_knots,
    member_flag,
    precision_lower_bound,
    precision_tier,
    score_table,
    split_folds,
    split_threshold_fold,
    threshold_curve,
    with_evidence,
)


def binomial_tail(tp: int, n: int, p: float) -> float:
    """P(X >= tp) for X ~ Binomial(n, p), summed term by term."""
    return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(tp, n + 1))


# Ten users with ties at 0.8 (one hit, one miss), 0.5 (two hits), 0.2 and 0.1; 5 positives in all.
TIED = [
    ("u1", 0.9, 1), ("u2", 0.8, 1), ("u3", 0.8, 0), ("u4", 0.5, 1), ("u5", 0.5, 1),
    ("u6", 0.3, 0), ("u7", 0.2, 0), ("u8", 0.2, 1), ("u9", 0.1, 0), ("u10", 0.1, 0),
]  # fmt: skip


@pytest.fixture()
def tied(spark):
    return spark.createDataFrame(TIED, "user_id string, score double, label int")


# A cumulative table written by hand: groups (score, rows, positives) = (0.2, 200, 20), (0.5, 100, 40),
# (0.7, 60, 42), (0.9, 40, 38); 140 positives. members / true positives at each threshold and above:
# 0.2: 400/140 = 0.35   0.5: 200/120 = 0.60   0.7: 100/80 = 0.80   0.9: 40/38 = 0.95
# One-sided 95 % Clopper–Pearson lower bounds: 0.3104, 0.5397, 0.7228, 0.8508 (each checked below).
HAND_TABLE = pd.DataFrame(
    {
        "threshold": [0.2, 0.5, 0.7, 0.9],
        "members": [400, 200, 100, 40],
        "true_positives": [140, 120, 80, 38],
        "precision": [0.35, 0.60, 0.80, 0.95],
        "recall": [1.0, 120 / 140, 80 / 140, 38 / 140],
    }
)


@pytest.mark.parametrize(
    ("tp", "n", "expected"),
    [(8, 10, 0.4931), (140, 400, 0.3104), (120, 200, 0.5397), (80, 100, 0.7228), (38, 40, 0.8508)],
)
def test_clopper_pearson_lower_bound_solves_the_binomial_tail(tp: int, n: int, expected: float) -> None:
    bound = precision_lower_bound(tp, n, 0.95)
    assert bound == pytest.approx(expected, abs=1e-4)
    assert binomial_tail(tp, n, bound) == pytest.approx(0.05, abs=1e-9)


def test_lower_bound_closed_forms_and_bad_input() -> None:
    # All hits: P(X >= n) = L**n = alpha, so L = alpha ** (1 / n).
    assert precision_lower_bound(10, 10, 0.95) == pytest.approx(0.05 ** (1 / 10), abs=1e-12)
    assert precision_lower_bound(1, 1, 0.95) == pytest.approx(0.05, abs=1e-12)
    assert precision_lower_bound(0, 10, 0.95) == 0.0
    assert precision_lower_bound(0, 0, 0.95) == 0.0
    # A higher confidence gives a lower (more cautious) bound.
    assert precision_lower_bound(8, 10, 0.99) < precision_lower_bound(8, 10, 0.95)
    with pytest.raises(ValueError, match="tp=11, n=10"):
        precision_lower_bound(11, 10)
    with pytest.raises(ValueError, match="confidence"):
        precision_lower_bound(1, 2, 1.0)


def test_score_table_keeps_tied_users_together(tied) -> None:
    table = score_table(tied)
    # score >= t: 0.1 -> all 10 (5 hits); 0.2 -> 8 (5); 0.3 -> 6 (4); 0.5 -> 5 (4); 0.8 -> 3 (2); 0.9 -> 1 (1)
    assert table["threshold"].tolist() == [0.1, 0.2, 0.3, 0.5, 0.8, 0.9]
    assert table["members"].tolist() == [10, 8, 6, 5, 3, 1]
    assert table["true_positives"].tolist() == [5, 5, 4, 4, 2, 1]
    assert table["precision"].tolist() == pytest.approx([0.5, 0.625, 4 / 6, 0.8, 2 / 3, 1.0])
    assert table["recall"].tolist() == pytest.approx([1.0, 1.0, 0.8, 0.8, 0.4, 0.2])
    # The tie at 0.8 (a hit and a miss) is never split: no operating point has 2 or 4 members.
    assert not {2, 4} & set(table["members"])


def test_score_table_rejects_null_scores_and_non_binary_labels(spark) -> None:
    nulls = spark.createDataFrame([("a", None, 1), ("b", 0.4, 0)], "user_id string, score double, label int")
    with pytest.raises(ValueError, match=r"1 row\(s\) with a null 'score'"):
        score_table(nulls)
    twos = spark.createDataFrame([("a", 0.3, 2), ("b", 0.4, 0)], "user_id string, score double, label int")
    with pytest.raises(ValueError, match=r"1 row\(s\) whose 'label' is not 0 or 1"):
        score_table(twos)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['label'\]"):
        score_table(twos.drop("label"))


def test_curve_spreads_points_by_size_and_bounds_each_point(tied) -> None:
    # Three points aimed at sizes 10, 5.5 and 1: the highest threshold keeping at least that many users
    # is 0.1 (10 users), 0.3 (6 users) and 0.9 (1 user).
    curve = threshold_curve(tied, n_points=3, confidence=0.95)
    assert list(curve.columns) == ["threshold", "members", "true_positives", "precision", "precision_lower", "recall"]
    assert curve["threshold"].tolist() == [0.1, 0.3, 0.9]
    assert curve["members"].tolist() == [10, 6, 1]
    assert curve["true_positives"].tolist() == [5, 4, 1]
    assert curve["recall"].tolist() == pytest.approx([1.0, 0.8, 0.2])
    lower = curve["precision_lower"].tolist()
    assert binomial_tail(5, 10, lower[0]) == pytest.approx(0.05, abs=1e-9)
    assert binomial_tail(4, 6, lower[1]) == pytest.approx(0.05, abs=1e-9)
    assert lower[2] == pytest.approx(0.05)  # 1 of 1: alpha ** (1 / 1)


def test_curve_has_fewer_points_when_scores_tie(tied) -> None:
    curve = threshold_curve(tied, n_points=80, confidence=0.95)
    assert curve["threshold"].tolist() == [0.1, 0.2, 0.3, 0.5, 0.8, 0.9]


def test_choose_thresholds_takes_the_lowest_threshold_whose_bound_meets_the_target() -> None:
    levels = {"high": 0.8, "medium": 0.6, "low": 0.3}
    choices = choose_thresholds(HAND_TABLE, levels, min_segment_size=30, confidence=0.95)

    high = choices["high"]  # only 0.9 has a bound >= 0.8 (0.8508)
    assert (high.status, high.threshold, high.holdout_members) == (STATUS_OK, 0.9, 40)
    assert high.expected_precision == pytest.approx(0.95)
    assert high.precision_lower == pytest.approx(0.8508, abs=1e-4)
    assert high.expected_recall == pytest.approx(38 / 140)

    # At 0.5 the point estimate is exactly 0.60 but its bound is 0.5397: the promise needs 0.7 (bound 0.7228).
    medium = choices["medium"]
    assert (medium.status, medium.threshold, medium.holdout_members) == (STATUS_OK, 0.7, 100)
    assert medium.expected_recall == pytest.approx(80 / 140)

    low = choices["low"]  # 0.3104 >= 0.3 already at the lowest threshold: everyone, full recall
    assert (low.threshold, low.holdout_members, low.expected_recall) == (0.2, 400, 1.0)
    assert all(c.best_precision == pytest.approx(0.95) and c.best_precision_members == 40 for c in choices.values())


def test_level_reachable_only_below_the_minimum_size_is_unreachable_not_lowered() -> None:
    # With 50 members required, 0.9 (40 members) is too small, and no larger set has a bound >= 0.8.
    choices = choose_thresholds(HAND_TABLE, {"high": 0.8, "medium": 0.6}, min_segment_size=50, confidence=0.95)
    high = choices["high"]
    assert high.status == STATUS_UNREACHABLE
    assert (high.threshold, high.expected_precision, high.precision_lower, high.expected_recall) == (None,) * 4
    assert high.holdout_members == 0
    # The best set of at least 50 members is threshold 0.7: precision 0.80 with 100 members.
    assert (high.best_precision, high.best_precision_members) == (pytest.approx(0.8), 100)
    assert "precision lower bound >= 0.8" in high.reason and "100 members" in high.reason
    assert choices["medium"].threshold == 0.7


def test_choose_thresholds_on_spark_rows_with_ties(tied) -> None:
    # Median (confidence 0.5) bounds keep this tiny set interesting. Hand values, from Beta(tp, n - tp + 1):
    # 0.1: 5/10 -> 0.4517; 0.2: 5/8 -> 0.5598; 0.3: 4/6 -> 0.5786; 0.5: 4/5 -> 0.6862; 0.8: 2/3 -> 0.5; 0.9: 1/1 -> 0.5
    levels = {"a": 0.55, "b": 0.6, "c": 0.7}
    choices = choose_thresholds(tied, levels, min_segment_size=2, confidence=0.5)
    assert (choices["a"].threshold, choices["a"].holdout_members) == (0.2, 8)
    assert binomial_tail(5, 8, choices["a"].precision_lower) == pytest.approx(0.5, abs=1e-9)
    assert (choices["b"].threshold, choices["b"].holdout_members) == (0.5, 5)
    c = choices["c"]
    assert c.status == STATUS_UNREACHABLE
    # Precision 1.0 at 0.9 has a single member; the best set of >= 2 members is 0.5: 4 of 5.
    assert (c.best_precision, c.best_precision_members) == (pytest.approx(0.8), 5)


def test_segment_below_the_minimum_size_leaves_every_level_unreachable(tied) -> None:
    choices = choose_thresholds(tied, {"low": 0.1}, min_segment_size=20, confidence=0.95)
    low = choices["low"]
    assert low.status == STATUS_UNREACHABLE and low.holdout_members == 0
    # No set reaches 20 users, so the most precise set of any size is reported: 1 of 1 at 0.9.
    assert (low.best_precision, low.best_precision_members) == (1.0, 1)
    assert "no set reaches 20 members" in low.reason


def test_every_score_equal_gives_one_operating_point(spark) -> None:
    same = spark.createDataFrame([(f"u{i}", 0.5, 1) for i in range(4)], "user_id string, score double, label int")
    curve = threshold_curve(same, n_points=80, confidence=0.95)
    assert curve["threshold"].tolist() == [0.5] and curve["members"].tolist() == [4]
    # 4 of 4: the bound is 0.05 ** (1 / 4) = 0.4729, so 0.4 is promised to everyone and 0.5 to no one.
    choices = choose_thresholds(same, {"low": 0.4, "medium": 0.5}, min_segment_size=1, confidence=0.95)
    assert choices["low"].precision_lower == pytest.approx(0.05**0.25)
    assert (choices["low"].threshold, choices["low"].holdout_members, choices["low"].expected_recall) == (0.5, 4, 1.0)
    assert choices["medium"].status == STATUS_UNREACHABLE
    assert (choices["medium"].best_precision, choices["medium"].best_precision_members) == (1.0, 4)


def test_bad_levels_are_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="precision level 'vip'"):
        choose_thresholds(HAND_TABLE, {"vip": 1.5}, min_segment_size=1, confidence=0.95)


def _choice(level: str, target: float, threshold: float | None) -> ThresholdChoice:
    status = STATUS_OK if threshold is not None else STATUS_UNREACHABLE
    return ThresholdChoice(level, target, status, threshold, None, None, None, 0, 0.0, 0)


def test_tier_is_the_strictest_level_reached_and_flags_follow_thresholds(spark) -> None:
    choices = {
        "low": _choice("low", 0.4, 0.2),
        "high": _choice("high", 0.8, 0.7),
        "p90": _choice("p90", 0.9, None),
        "medium": _choice("medium", 0.6, 0.5),
    }
    scores = spark.createDataFrame(
        [(1, 0.95), (2, 0.7), (3, 0.6), (4, 0.5), (5, 0.3), (6, 0.1), (7, None)], "id int, score double"
    )
    rows = scores.select(
        "id",
        precision_tier(F.col("score"), choices).alias("tier"),
        member_flag(F.col("score"), choices["medium"]).alias("medium"),
        member_flag(F.col("score"), choices["p90"]).alias("p90"),
    ).orderBy("id")
    got = [(r.tier, r.medium, r.p90) for r in rows.collect()]
    assert got == [
        ("high", True, False),
        ("high", True, False),  # exactly at the threshold counts
        ("medium", True, False),
        ("medium", True, False),
        ("low", False, False),
        (None, False, False),
        (None, False, False),  # a null score is in no segment
    ]


def test_expected_sizes_counts_todays_users_per_threshold(spark) -> None:
    today = spark.createDataFrame([("a", 0.1), ("b", 0.5), ("c", 0.5), ("d", 0.9)], "user_id string, score double")
    assert expected_sizes(today, [0.5, None, 0.95, 0.1]) == [3, 0, 0, 4]


def _miscalibrated(spark):
    # Raw scores far too confident: 0.8 where 1 user in 4 converts, 0.9 where 3 in 4 do. Each user has
    # a distinct raw score so the isotonic boundaries reveal which rows the calibrator was fitted on.
    rows = []
    for i in range(24):
        rows.append((f"a{i}", 0.80 + i * 1e-4, 1 if i % 4 == 0 else 0))
        rows.append((f"b{i}", 0.90 + i * 1e-4, 0 if i % 4 == 0 else 1))
    return spark.createDataFrame(rows, "user_id string, raw_score double, label int")


def test_folds_are_disjoint_cover_the_holdout_and_are_stable(spark) -> None:
    holdout = _miscalibrated(spark)
    first_cal, first_thr = split_folds(holdout, seed=7)
    cal_ids = {r.user_id for r in first_cal.collect()}
    thr_ids = {r.user_id for r in first_thr.collect()}
    assert not cal_ids & thr_ids and len(cal_ids | thr_ids) == 48 and cal_ids and thr_ids
    assert {r.user_id for r in split_folds(holdout, seed=7)[0].collect()} == cal_ids


def test_a_salt_draws_a_fresh_split_that_is_itself_stable(spark) -> None:
    rows = [(f"u{i}", 0.5, 1) for i in range(200)]
    holdout = spark.createDataFrame(rows, "user_id string, raw_score double, label int")

    def ids(frame) -> set[str]:
        return {r.user_id for r in frame.collect()}

    may, june = ids(split_folds(holdout, 7, "2026-05-25")[1]), ids(split_folds(holdout, 7, "2026-06-01")[1])
    assert may == ids(split_folds(holdout, 7, "2026-05-25")[1])  # a re-run of the same training splits alike
    # Each user is in both folds with chance 1/4: Binomial(200, 1/4) = 50 +- 3 sigma (18), not 100 as unsalted.
    assert 29 <= len(may & june) <= 71
    assert ids(split_threshold_fold(holdout, 7, "2026-05-25")[1]) != ids(split_threshold_fold(holdout, 7)[1])


def test_calibrator_is_fitted_on_one_fold_is_monotone_and_lowers_brier(spark) -> None:
    holdout = _miscalibrated(spark)
    result = fit_calibrator(holdout, seed=7)
    calibration_fold, threshold_fold = split_folds(holdout, seed=7)
    calibration_raw = {r.raw_score for r in calibration_fold.collect()}
    threshold_rows = result.threshold_fold.select("user_id", "raw_score", "score", "label").collect()
    # No leakage: every isotonic boundary is a raw score from the calibration fold, and every knot of
    # the interpolated map is the centre of two of them.
    boundaries = result.isotonic.boundaries.toArray().tolist()
    assert set(boundaries) <= calibration_raw
    assert all(min(boundaries) <= x <= max(boundaries) for x, _ in result.knots)
    assert {r.user_id for r in threshold_rows} == {r.user_id for r in threshold_fold.collect()}
    assert result.calibration_rows + result.threshold_rows == 48

    # Brier on the threshold fold, summed by hand from its rows.
    before = sum((r.raw_score - r.label) ** 2 for r in threshold_rows) / len(threshold_rows)
    after = sum((r.score - r.label) ** 2 for r in threshold_rows) / len(threshold_rows)
    assert result.brier_before == pytest.approx(before) and result.brier_after == pytest.approx(after)
    # Raw 0.8 at a 25 % rate alone costs 0.25 * 0.04 + 0.75 * 0.64 = 0.49 per user; calibration must beat that.
    assert result.brier_after < result.brier_before

    grid = spark.createDataFrame([(x / 20,) for x in range(21)], "raw_score double")
    mapped = [r.score for r in PipelineModel(stages=[result.calibrator]).transform(grid).orderBy("raw_score").collect()]
    # Strictly increasing now (interpolation plus the raw-score tie-break), and still a probability.
    assert all(a < b for a, b in itertools.pairwise(mapped)) and mapped[0] >= 0.0 and mapped[-1] <= 1.0

    kinds = set(result.reliability["kind"])
    assert kinds == {"raw", "calibrated"}
    raw_bins = result.reliability[result.reliability["kind"] == "raw"]
    # Raw scores 0.80..0.9023 fall in bins 8 and 9; their rows add up to the threshold fold.
    assert set(raw_bins["bin"]) <= {8, 9} and raw_bins["rows"].sum() == len(threshold_rows)


def test_fit_calibrator_names_the_missing_column(spark) -> None:
    holdout = _miscalibrated(spark).drop("label")
    with pytest.raises(ValueError, match=r"holdout: missing column\(s\) \['label'\]"):
        fit_calibrator(holdout, seed=1)


def test_counts_at_a_threshold_include_everyone_at_or_above_it() -> None:
    table = pd.DataFrame({"threshold": [0.1, 0.2, 0.5, 0.8], "members": [10, 8, 6, 2],
                          "true_positives": [5, 4, 3, 1]})
    assert counts_at(table, 0.5) == (6, 3)
    assert counts_at(table, 0.3) == (6, 3)  # between observed scores: the next one up
    assert counts_at(table, 0.05) == (10, 5)
    assert counts_at(table, 0.9) == (0, 0)


def test_threshold_fold_halves_are_disjoint_cover_it_and_are_stable(spark) -> None:
    rows = [(f"u{i}", 0.5, 1.0) for i in range(200)]
    fold = spark.createDataFrame(rows, "user_id string, score double, label double")
    choice, evidence = split_threshold_fold(fold, seed=7)
    choice_ids = {r.user_id for r in choice.collect()}
    evidence_ids = {r.user_id for r in evidence.collect()}
    assert not choice_ids & evidence_ids and len(choice_ids | evidence_ids) == 200
    # A fair hash: each half holds 100 +- 3 sigma (15) of the 200 users.
    assert 85 <= len(choice_ids) <= 115
    assert {r.user_id for r in split_threshold_fold(fold, seed=7)[0].collect()} == choice_ids
    # Independent of the calibration split: the threshold fold's own users land in both halves.
    _, threshold_fold = split_folds(fold, seed=7)
    thr_choice, thr_evidence = split_threshold_fold(threshold_fold, seed=7)
    assert thr_choice.count() > 20 and thr_evidence.count() > 20


def test_evidence_is_counted_at_the_production_threshold_on_the_evidence_half() -> None:
    # Evidence half: scores 0.1 / 0.4 / 0.7 / 0.9 with 10 / 8 / 6 / 2 users at or above, 5 / 4 / 3 / 1 hits.
    evidence_table = pd.DataFrame({"threshold": [0.1, 0.4, 0.7, 0.9], "members": [10, 8, 6, 2],
                                   "true_positives": [5, 4, 3, 1]})
    choices = with_evidence({"low": ThresholdChoice("low", 0.5, STATUS_OK, 0.4, 0.8, 0.6, 0.9, 30, 1.0, 5),
                             # 0.75 was chosen on the other half; here the users at or above it score 0.9.
                             "medium": ThresholdChoice("medium", 0.6, STATUS_OK, 0.75, 0.9, 0.7, 0.5, 12, 1.0, 5),
                             "impossible": _choice("impossible", 0.99, None)}, evidence_table)
    assert (choices["low"].promise_members, choices["low"].promise_true_positives) == (8, 4)
    assert (choices["medium"].promise_members, choices["medium"].promise_true_positives) == (2, 1)
    assert (choices["impossible"].promise_members, choices["impossible"].promise_true_positives) == (0, 0)
    # What was chosen stays as chosen: only the evidence is attached.
    assert choices["low"].threshold == 0.4 and choices["low"].holdout_members == 30
    assert with_evidence(choices, evidence_table.iloc[0:0])["low"].promise_members == 0


def test_isotonic_knots_are_the_centres_of_the_constant_blocks() -> None:
    # Blocks: {0.1, 0.2} -> 0, {0.3} -> 0.5, {0.5, 0.6} -> 1; centres 0.15, 0.3 and 0.55.
    knots = isotonic_knots([0.1, 0.2, 0.3, 0.5, 0.6], [0.0, 0.0, 0.5, 1.0, 1.0])
    assert [x for x, _ in knots] == pytest.approx([0.15, 0.3, 0.55]) and [y for _, y in knots] == [0.0, 0.5, 1.0]
    assert isotonic_knots([0.4], [0.25]) == ((0.4, 0.25),)


def test_interpolated_isotonic_is_linear_between_knots_flat_beyond_and_ties_broken_by_the_raw_score(spark) -> None:
    rows = [(0.1,), (0.2,), (0.4,), (0.6,), (0.9,), (None,)]
    raw = spark.createDataFrame(rows, "raw_score double")
    knots = [(0.2, 0.1), (0.6, 0.5)]

    def mapped(tie_break: float) -> list[float | None]:
        out = interpolated_isotonic(knots, tie_break=tie_break).transform(raw)
        return [r.score for r in out.orderBy(F.col("raw_score").asc_nulls_last()).collect()]

    # No tie-break: 0.1 below the first knot -> 0.1; 0.4 halfway from (0.2, 0.1) to (0.6, 0.5) -> 0.3;
    # 0.9 beyond the last knot -> 0.5; a null raw score stays null.
    assert mapped(0.0)[:5] == pytest.approx([0.1, 0.1, 0.3, 0.5, 0.5]) and mapped(0.0)[5] is None
    # With eps = 0.01: (1 - eps) f + eps raw: 0.099 + 0.001, 0.099 + 0.002, 0.297 + 0.004, 0.495 + 0.006, 0.495 + 0.009.
    assert mapped(0.01)[:5] == pytest.approx([0.100, 0.101, 0.301, 0.501, 0.504])
    with pytest.raises(ValueError, match="strictly increasing"):
        interpolated_isotonic([(0.2, 0.1), (0.2, 0.3)])


def test_the_calibrated_score_keeps_every_distinction_of_the_raw_score(spark) -> None:
    # 2,000 users with distinct raw scores i / 2000; the positive rate climbs in four steps, so the
    # isotonic fit alone has only a handful of distinct values. The calibrated score must have as many
    # distinct values as the raw score on the threshold fold, in the same order (so the same AUC).
    rows = [(f"u{i}", i / 2000, 1 if (i * 7919) % 100 < 10 + 20 * (i // 500) else 0) for i in range(2000)]
    holdout = spark.createDataFrame(rows, "user_id string, raw_score double, label int")
    result = fit_calibrator(holdout, seed=3)
    fold = result.threshold_fold.select("raw_score", "score").toPandas().sort_values("raw_score")
    assert fold["score"].nunique() == fold["raw_score"].nunique() == result.threshold_rows
    assert fold["score"].is_monotonic_increasing and fold["score"].diff().dropna().gt(0).all()
    assert result.isotonic.predictions.toArray().size < 2000  # the step function alone ties users
