"""BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): fit and predict.

The classic customer-base model, used as a baseline the segment model must beat (benchmarks/baselines.py)
and whose sufficient statistics the feature pass exposes (`features.spec`, family "customer base").
Per customer: `x` repeat transactions, `t_x` the time of the last one and `T` the time since the
first one (all in the same unit, here days), every transaction before the snapshot.

While alive, a customer buys as a Poisson process with rate λ ~ Gamma(r, α); after each purchase they
drop out with probability p ~ Beta(a, b). The likelihood of one customer (FHL 2005, eq. 6):

    L = B(a, b + x) / B(a, b) · Γ(r + x) α^r / (Γ(r) (α + T)^(r + x))
      + [x > 0] · B(a + 1, b + x − 1) / B(a, b) · Γ(r + x) α^r / (Γ(r) (α + t_x)^(r + x))

fitted by maximum likelihood with scipy (parameters optimised on the log scale so they stay positive).
Plain numpy arrays in and out: a few thousand to a few hundred thousand customers fit on the driver in
seconds, and the model has four numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1


@dataclass(frozen=True)
class BgNbdParams:
    r: float
    alpha: float
    a: float
    b: float


def _arrays(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    if np.any(x < 0) or np.any(t_x < 0) or np.any(t_x > T + 1e-9):
        raise ValueError("BG/NBD needs x >= 0 and 0 <= t_x <= T for every customer")
    return x, t_x, T


def log_likelihood(params: BgNbdParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Per-customer log-likelihood (FHL 2005 eq. 6), computed in logs to stay finite for large x and T."""
    return _log_likelihood(params, *_arrays(x, t_x, T))


def _log_likelihood(params: BgNbdParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) - betaln(a, b)
    alive = betaln(a, b + x) - (r + x) * np.log(alpha + T)
    # The dropout term exists only after a repeat purchase; where x = 0 it is −inf (log 0).
    with np.errstate(divide="ignore", invalid="ignore"):
        dropped = np.where(x > 0, betaln(a + 1, np.maximum(b + x - 1, 1e-12)) - (r + x) * np.log(alpha + t_x), -np.inf)
    return common + np.logaddexp(alive, dropped)


# Log-parameter box of the search: e^±12 spans 6e-6 .. 1.6e5, wider than any rate or dropout scale in
# days; without it the search walks the flat ridge where a and b grow together (few dropouts seen).
LOG_PARAM_BOUND = 12.0


def fit_bgnbd(x: np.ndarray, t_x: np.ndarray, T: np.ndarray, weights: np.ndarray | None = None) -> BgNbdParams:
    """Maximum-likelihood BG/NBD parameters: L-BFGS-B on log-parameters inside a box, Nelder–Mead only
    when it stops short.

    `weights` counts customers per row, so identical (x, t_x, T) triples can be passed once. The
    training pipeline fits this per event for every candidate, so it must take about a second: the
    former Nelder–Mead-first search ran up to 4,000 steps along the (a, b) ridge, 40 s for 1,500
    triples against 1 s for L-BFGS-B at the same likelihood (to 1 part in 70,000; benchmarks/RESULTS.md).
    """
    x, t_x, T = _arrays(x, t_x, T)
    if len(x) == 0:
        raise ValueError("BG/NBD needs at least one customer")
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=float)

    def negative(log_params: np.ndarray) -> float:
        r, alpha, a, b = np.exp(np.clip(log_params, -LOG_PARAM_BOUND, LOG_PARAM_BOUND))
        value = -float(np.sum(w * _log_likelihood(BgNbdParams(r, alpha, a, b), x, t_x, T)))
        return value if np.isfinite(value) else 1e300

    # Start from the usual scale: rate ~ purchases per unit of tenure, a moderate dropout.
    start = np.log([1.0, max(float(np.average(T, weights=w)), 1.0), 1.0, 1.0])
    box = [(-LOG_PARAM_BOUND, LOG_PARAM_BOUND)] * 4
    fit = minimize(negative, start, method="L-BFGS-B", bounds=box)
    if not fit.success:  # a rough surface (tiny or odd samples): polish with the derivative-free search
        polished = minimize(negative, fit.x, method="Nelder-Mead", bounds=box, options={"maxiter": 1000})
        fit = polished if polished.fun <= fit.fun else fit
    best = fit.x
    r, alpha, a, b = (float(v) for v in np.exp(best))
    return BgNbdParams(r=r, alpha=alpha, a=a, b=b)


def p_alive(params: BgNbdParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(still alive at T | x, t_x, T) = 1 / (1 + [x > 0] · a / (b + x − 1) · ((α + T) / (α + t_x))^(r + x)).

    1 when x = 0: the model lets a customer drop out only right after a repeat purchase.
    """
    x, t_x, T = _arrays(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        odds = (a / np.maximum(b + x - 1, 1e-12)) * np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + t_x)))
    return np.where(x > 0, 1.0 / (1.0 + odds), 1.0)


def p_any(params: BgNbdParams, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """P(at least one purchase in (T, T + t] | x, t_x, T) = P(alive) · (1 − ((α + T) / (α + T + t))^(r + x)).

    Alive at T, the rate's posterior is Gamma(r + x, α + T), and a dropout can only follow a purchase,
    so "none in t" is that posterior's Laplace transform at t. The segment's `occurs` question.
    """
    x, t_x, T = _arrays(x, t_x, T)
    r, alpha = params.r, params.alpha
    silent = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t)))
    return p_alive(params, x, t_x, T) * (1.0 - silent)


def expected_purchases(params: BgNbdParams, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """E[number of purchases in (T, T + t] | x, t_x, T] (FHL 2005 eq. 10); needs a > 1 for the closed form.

    With a ≤ 1 the closed form's (a − 1) changes sign; the ranking is then by P(alive) × the posterior
    Poisson rate × t, the same quantity's first-order form, which keeps the order meaningful.
    """
    x, t_x, T = _arrays(x, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    alive = p_alive(params, x, t_x, T)
    if a <= 1.0:
        return alive * (r + x) / (alpha + T) * t
    z = t / (alpha + T + t)
    head = (a + b + x - 1) / (a - 1)
    tail = 1.0 - np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t))) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    # head · tail is the "alive at T" expectation divided by the same odds term P(alive) uses.
    return head * tail * alive
