"""BG/NBD (segments_lib.model.bgnbd): the likelihood, P(alive) and expectations against hand-worked values,
and a fit that recovers the parameters of data simulated from the model itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segments_lib.model.bgnbd import BgNbdParams, expected_purchases, fit_bgnbd, log_likelihood, p_alive, p_any


def test_likelihood_of_a_customer_without_repeats_is_the_gamma_poisson_zero() -> None:
    # x = 0: L = (alpha / (alpha + T))^r = (3 / 10)^2, whatever a and b are.
    ll = log_likelihood(BgNbdParams(r=2, alpha=3, a=0.7, b=5), np.array([0]), np.array([0]), np.array([7]))
    assert ll[0] == pytest.approx(2 * math.log(0.3))


def test_likelihood_with_a_repeat_adds_the_dropout_term() -> None:
    # r = alpha = 1, a = 2, b = 3, x = 1, t_x = 2, T = 5. B(2,3) = 1/12, B(2,4) = 1/20, B(3,3) = 1/30.
    # alive: B(2,4)/B(2,3) / (1 + 5)^2 = 0.6 / 36; dropped: B(3,3)/B(2,3) / (1 + 2)^2 = 0.4 / 9.
    ll = log_likelihood(BgNbdParams(r=1, alpha=1, a=2, b=3), np.array([1]), np.array([2]), np.array([5]))
    assert ll[0] == pytest.approx(math.log(0.6 / 36 + 0.4 / 9))


def test_p_alive_falls_with_silence_since_the_last_purchase() -> None:
    # odds = a / (b + x - 1) * ((alpha + T) / (alpha + t_x))^(r + x) = 1/3 * (12 / 6)^3 = 8/3 -> 3/11.
    params = BgNbdParams(r=1, alpha=2, a=1, b=2)
    alive = p_alive(params, np.array([2, 2, 0]), np.array([4, 10, 0]), np.array([10, 10, 10]))
    assert alive == pytest.approx([3 / 11, 1 / (1 + 1 / 3), 1.0])


def test_expected_purchases_of_a_new_customer() -> None:
    # x = t_x = T = 0, r = alpha = 1, a = 2, b = 1, t = 1: (a + b - 1)/(a - 1) * (1 - (1/2) * 2F1(1, 1; 2; 1/2)),
    # and 2F1(1, 1; 2; z) = -ln(1 - z) / z = 2 ln 2, so E = 2 * (1 - ln 2).
    value = expected_purchases(BgNbdParams(r=1, alpha=1, a=2, b=1), 1.0, np.array([0]), np.array([0]), np.array([0]))
    assert value[0] == pytest.approx(2 * (1 - math.log(2)))


def test_p_any_is_p_alive_times_the_gamma_poisson_chance_of_an_event_in_the_horizon() -> None:
    # r = 2, alpha = 3, a = b = 1, T = 7, t = 10. x = 0: alive, 1 − (10 / 20)^2 = 0.75.
    # x = 1, t_x = 2: odds = a / (b + 0) · (10 / 5)^3 = 8, P(alive) = 1/9; 1/9 · (1 − (10 / 20)^3) = 7/72.
    params = BgNbdParams(r=2, alpha=3, a=1, b=1)
    value = p_any(params, 10.0, np.array([0, 1]), np.array([0, 2]), np.array([7, 7]))
    assert value == pytest.approx([0.75, 7 / 72])


def test_p_any_and_the_rate_can_rank_two_customers_oppositely() -> None:
    # Over a long horizon the heavy buyer who may have lapsed (20 repeats, silent 15 days: P(alive) 0.42)
    # has the higher expected rate (0.42 · 21 / 100 against 0.80 · 4 / 100), yet the light buyer who is
    # surely alive (3 repeats, silent 5 days: 0.80) is the likelier to buy at all in 90 days (0.74 against
    # 0.42): the reason the segment ranks by P(any).
    params = BgNbdParams(r=1, alpha=10, a=1, b=3)
    x, t_x, T = np.array([20, 3]), np.array([75, 85]), np.array([90, 90])
    rate = p_alive(params, x, t_x, T) * (params.r + x) / (params.alpha + T)
    chance = p_any(params, 90.0, x, t_x, T)
    assert rate[0] > rate[1] and chance[0] < chance[1]


def test_fit_recovers_the_parameters_of_simulated_customers() -> None:
    # 4,000 customers observed for 52 weeks from r = 0.5, alpha = 5, a = 2, b = 6 (the generative story:
    # Poisson purchases at rate lambda ~ Gamma(r, 1/alpha), dropout with probability p ~ Beta(a, b) after each).
    rng = np.random.default_rng(11)
    n, horizon = 4000, 52.0
    rates = rng.gamma(0.5, 1 / 5, n)
    dropouts = rng.beta(2, 6, n)
    x, t_x = np.zeros(n), np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / rates[i])
            if t >= horizon:
                break
            x[i], t_x[i] = x[i] + 1, t
            if rng.random() < dropouts[i]:
                break
    fitted = fit_bgnbd(x, t_x, np.full(n, horizon))
    assert fitted.r == pytest.approx(0.5, rel=0.25) and fitted.alpha == pytest.approx(5, rel=0.35)
    # a and b are identified by their ratio more than their scale: the mean dropout a / (a + b) = 0.25.
    assert fitted.a / (fitted.a + fitted.b) == pytest.approx(0.25, abs=0.08)


def test_inconsistent_statistics_are_rejected() -> None:
    with pytest.raises(ValueError, match="t_x <= T"):
        fit_bgnbd(np.array([1]), np.array([5]), np.array([3]))
