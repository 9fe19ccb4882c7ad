"""Uplift metrics against values worked out by hand (segments_lib/model/uplift_metrics.py)."""

from __future__ import annotations

import numpy as np
import pytest

from segments_lib.model import uplift_metrics as um

# Six users in descending score; treated alternate, outcomes 1, 0, 1, 1, 0, 0.
SCORE = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
TREATED = np.array([1, 0, 1, 0, 1, 0])
OUTCOME = np.array([1, 0, 1, 1, 0, 0])


def test_qini_curve_of_six_users() -> None:
    curve = um.qini_curve(SCORE, TREATED, OUTCOME)
    # k = 1: no control yet -> 0. k = 2: 1 - 0. k = 3: 2 - 0. k = 4: 2 - 1*2/2. k = 5: 2 - 1*3/2. k = 6: 2 - 1*3/3.
    assert curve["qini"].tolist() == [0.0, 0.0, 1.0, 2.0, 1.0, 0.5, 1.0]
    assert curve["fraction"].tolist() == pytest.approx([0, 1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1])
    # (y_t/n_t - y_c/n_c) * k/N: k=2: (1 - 0)*2/6; k=3: (1 - 0)*3/6; k=4: (1 - 1/2)*4/6; k=5: (2/3 - 1/2)*5/6;
    # k=6: (2/3 - 1/3)*1.
    assert curve["uplift_curve"].tolist() == pytest.approx([0, 0, 1 / 3, 1 / 2, 1 / 3, 5 / 36, 1 / 3])


def test_qini_coefficient_auuc_and_top_fractions_of_six_users() -> None:
    # Per treated user (3): q/3 - x*q(1)/3 at x = i/6 is 0, -1/18, 4/18, 9/18, 2/18, -2/18, 0;
    # the trapezoid with h = 1/6 gives (1/6) * 12/18 = 1/9.
    assert um.qini_coefficient(SCORE, TREATED, OUTCOME) == pytest.approx(1 / 9)
    # (1/6) * (1/3 + 1/2 + 1/3 + 5/36 + (1/3)/2) = (1/6) * 53/36.
    assert um.auuc(SCORE, TREATED, OUTCOME) == pytest.approx(53 / 216)
    assert um.incremental_in_top(SCORE, TREATED, OUTCOME, 0.5) == pytest.approx(3.0)  # (2/2 - 0/1) * 3
    assert um.incremental_in_top(SCORE, TREATED, OUTCOME, 0.1) == 0.0  # k = 1 (0.6 rounds to 1): no control
    # The reverse ranking is worse than random: the area is negative.
    assert um.qini_coefficient(-SCORE, TREATED, OUTCOME) < 0


def test_tied_scores_enter_together_whatever_their_stored_order() -> None:
    score, treated = np.array([0.5, 0.5, 0.2, 0.2]), np.array([1, 0, 1, 0])
    outcome = np.array([1, 0, 0, 1])
    curve = um.qini_curve(score, treated, outcome)
    # Cuts only after each tie group: k = 2 (1 - 0*1/1 = 1) and k = 4 (1 - 1*2/2 = 0).
    assert curve["qini"].tolist() == [0.0, 1.0, 0.0]
    swapped = [1, 0, 3, 2]
    assert um.qini_curve(score[swapped], treated[swapped], outcome[swapped])["qini"].tolist() == [0.0, 1.0, 0.0]


def test_newcombe_interval_matches_the_published_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, table II, example (a): 56/70 vs 48/80, method 10.
    low, high = um.difference_interval(56, 70, 48, 80)
    assert (low, high) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    # Both groups with no outcome: the difference 0 lies inside and the bounds stay within [-1, 1].
    low, high = um.difference_interval(0, 10, 0, 10)
    assert -1 <= low < 0 < high <= 1


def test_uplift_by_decile_counts_and_rates() -> None:
    # Ten users, two bins of five: the top five hold 3 treated (2 converted) and 2 control (0 converted).
    score = np.arange(10, 0, -1, dtype=float)
    treated = np.array([1, 1, 0, 1, 0, 0, 1, 0, 1, 0])
    outcome = np.array([1, 1, 0, 0, 0, 1, 0, 0, 0, 1])
    table = um.uplift_by_decile(score, treated, outcome, bins=2)
    top, rest = table.iloc[0], table.iloc[1]
    assert (top.users, top.treated, top.control) == (5, 3, 2)
    assert (top.treated_rate, top.control_rate, top.uplift) == pytest.approx((2 / 3, 0.0, 2 / 3))
    assert (rest.users, rest.treated, rest.control) == (5, 2, 3)
    assert (rest.treated_rate, rest.control_rate, rest.uplift) == pytest.approx((0.0, 2 / 3, -2 / 3))
    assert top.uplift_low < top.uplift < top.uplift_high


@pytest.mark.parametrize(("score", "treated", "outcome", "message"), [
    ([0.1, 0.2], [1, 1], [0, 1], "both treated and control"),
    ([0.1, 0.2], [1, 0], [0, 2], "outcome must be 0 or 1"),
    ([0.1], [1, 0], [0, 1], "differ in length"),
    ([np.nan, 0.2], [1, 0], [0, 1], "missing values"),
])
def test_bad_inputs_get_a_clear_error(score, treated, outcome, message) -> None:
    with pytest.raises(ValueError, match=message):
        um.qini_coefficient(np.array(score), np.array(treated), np.array(outcome))
