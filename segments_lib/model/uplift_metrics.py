"""Uplift evaluation on randomized data: Qini curve and coefficient, AUUC, uplift by decile, lift CIs.

Every function reads three parallel arrays of a held-out, randomized population: `score` (the ranking
to judge, higher = target first), `treated` (1 if the user was exposed) and `outcome` (1 if the target
happened). Users are taken in descending score; users with the same score enter together, so a ranking
cannot look better by the order its ties happen to be stored in.

Definitions (Radcliffe 2007; Gutierrez & Gérardy 2017), with cumulative counts over the top of the ranking:
`n_t, n_c` treated and control users, `y_t, y_c` their outcomes.

* Qini curve: `q = y_t − y_c · n_t / n_c`, the incremental outcomes among the treated users so far
  (0 while no control user has entered: nothing to compare with).
* Qini coefficient: the area between the Qini curve and the random line from (0, 0) to (1, q(1)), with
  x the fraction of users targeted and q divided by the number of treated users, so the unit is an
  incremental outcome rate and holdouts of different sizes compare. Random targeting scores 0 on
  average; the ranking by true uplift scores the most.
* Uplift curve: `u = (y_t / n_t − y_c / n_c) · k / N`, the incremental outcomes per user of the whole
  population if the top k users (fraction k / N) were all treated; AUUC is its area over [0, 1].
* Incremental outcomes in the top fraction φ: `(y_t / n_t − y_c / n_c) · k` at the cut nearest φ · N.

Pure numpy on the driver: an evaluation holdout is one row per user, a few columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Cuts:
    """Cumulative counts at the end of each tie group of the descending ranking, with (0, …) prepended."""
    k: np.ndarray
    n_t: np.ndarray
    n_c: np.ndarray
    y_t: np.ndarray
    y_c: np.ndarray

    @property
    def fraction(self) -> np.ndarray:
        return self.k / self.k[-1]

    def rate_difference(self) -> np.ndarray:
        """y_t / n_t − y_c / n_c at each cut; 0 where either group is still empty."""
        both = (self.n_t > 0) & (self.n_c > 0)
        diff = np.zeros(self.k.size)
        diff[both] = self.y_t[both] / self.n_t[both] - self.y_c[both] / self.n_c[both]
        return diff


def _arrays(score: np.ndarray, treated: np.ndarray, outcome: np.ndarray) -> tuple[np.ndarray, ...]:
    score, treated, outcome = (np.asarray(a, dtype=float) for a in (score, treated, outcome))
    if not score.size == treated.size == outcome.size:
        raise ValueError(f"score, treated and outcome differ in length: {score.size}, {treated.size}, {outcome.size}")
    if score.size == 0:
        raise ValueError("uplift metrics need at least one user")
    for name, values in (("treated", treated), ("outcome", outcome)):
        if not np.isin(values, (0.0, 1.0)).all():
            raise ValueError(f"{name} must be 0 or 1 for every user")
    if np.isnan(score).any():
        raise ValueError("score has missing values")
    if treated.min() == treated.max():
        raise ValueError("uplift metrics need both treated and control users")
    return score, treated, outcome


def cuts(score: np.ndarray, treated: np.ndarray, outcome: np.ndarray) -> Cuts:
    """The ranking's cumulative counts, one cut after each group of equal scores."""
    score, treated, outcome = _arrays(score, treated, outcome)
    order = np.argsort(-score, kind="stable")
    s, t, y = score[order], treated[order], outcome[order]
    group_end = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # last row of each tie group

    def cumulative(x: np.ndarray) -> np.ndarray:
        return np.r_[0.0, np.cumsum(x)[group_end]]

    return Cuts(k=np.r_[0.0, group_end + 1.0], n_t=cumulative(t), n_c=cumulative(1 - t),
                y_t=cumulative(t * y), y_c=cumulative((1 - t) * y))


def qini_curve(score: np.ndarray, treated: np.ndarray, outcome: np.ndarray) -> pd.DataFrame:
    """fraction targeted, Qini value q and uplift-curve value u at every cut (see the module docstring)."""
    c = cuts(score, treated, outcome)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(c.n_c > 0, c.y_t - c.y_c * c.n_t / c.n_c, 0.0)
    return pd.DataFrame({"fraction": c.fraction, "qini": q, "uplift_curve": c.rate_difference() * c.fraction})


def qini_coefficient(score: np.ndarray, treated: np.ndarray, outcome: np.ndarray) -> float:
    """Area between the Qini curve (per treated user) and the random line; 0 is random targeting."""
    curve = qini_curve(score, treated, outcome)
    total_treated = float(np.sum(np.asarray(treated, dtype=float)))
    x, q = curve["fraction"].to_numpy(), curve["qini"].to_numpy() / total_treated
    return float(np.trapezoid(q - x * q[-1], x))


def auuc(score: np.ndarray, treated: np.ndarray, outcome: np.ndarray) -> float:
    """Area under the uplift curve: mean incremental outcomes per user over every targeting fraction."""
    curve = qini_curve(score, treated, outcome)
    return float(np.trapezoid(curve["uplift_curve"].to_numpy(), curve["fraction"].to_numpy()))


def incremental_in_top(score: np.ndarray, treated: np.ndarray, outcome: np.ndarray, fraction: float) -> float:
    """(y_t / n_t − y_c / n_c) · k at the cut nearest `fraction` of the users: the outcomes gained by
    treating that top instead of nobody."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], found {fraction}")
    c = cuts(score, treated, outcome)
    at = int(np.argmin(np.abs(c.k - fraction * c.k[-1])[1:])) + 1  # never the empty cut
    return float(c.rate_difference()[at] * c.k[at])


def difference_interval(y_t: float, n_t: float, y_c: float, n_c: float, z: float = Z_95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10, Newcombe 1998) for p_t − p_c.

    Built from the two Wilson intervals, so it stays inside [−1, 1] and behaves at rates near 0 or 1
    and in small groups, where the Wald interval does not.
    """
    if n_t <= 0 or n_c <= 0:
        raise ValueError(f"both groups need users, found {n_t} treated and {n_c} control")
    p_t, p_c = y_t / n_t, y_c / n_c
    l_t, u_t = _wilson(y_t, n_t, z)
    l_c, u_c = _wilson(y_c, n_c, z)
    delta = p_t - p_c
    lower = delta - np.sqrt((p_t - l_t) ** 2 + (u_c - p_c) ** 2)
    upper = delta + np.sqrt((u_t - p_t) ** 2 + (p_c - l_c) ** 2)
    return float(lower), float(upper)


def _wilson(y: float, n: float, z: float) -> tuple[float, float]:
    p = y / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def uplift_by_decile(score: np.ndarray, treated: np.ndarray, outcome: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Per score decile (1 = highest scores): users, treated and control rates, uplift and its 95 % CI.

    Deciles split the descending ranking into equal counts; users tied across a boundary are split in
    stored order (with continuous scores that is a handful of users at most).
    """
    score, treated, outcome = _arrays(score, treated, outcome)
    order = np.argsort(-score, kind="stable")
    decile = np.empty(score.size, dtype=int)
    decile[order] = np.arange(score.size) * bins // score.size + 1
    rows = []
    for d in range(1, bins + 1):
        in_bin = decile == d
        t, y = treated[in_bin], outcome[in_bin]
        n_t, n_c = float(t.sum()), float((1 - t).sum())
        y_t, y_c = float((t * y).sum()), float(((1 - t) * y).sum())
        rate_t = y_t / n_t if n_t else float("nan")
        rate_c = y_c / n_c if n_c else float("nan")
        low, high = difference_interval(y_t, n_t, y_c, n_c) if n_t and n_c else (float("nan"), float("nan"))
        rows.append({"decile": d, "users": int(in_bin.sum()), "treated": int(n_t), "control": int(n_c),
                     "treated_rate": rate_t, "control_rate": rate_c, "uplift": rate_t - rate_c,
                     "uplift_low": low, "uplift_high": high})
    return pd.DataFrame(rows)


def summary(score: np.ndarray, treated: np.ndarray, outcome: np.ndarray) -> dict[str, float]:
    """The metrics an uplift run logs: Qini coefficient, AUUC, incremental outcomes in the top 10 % and 30 %."""
    return {
        "qini_coefficient": qini_coefficient(score, treated, outcome),
        "auuc": auuc(score, treated, outcome),
        "incremental_top_10pct": incremental_in_top(score, treated, outcome, 0.1),
        "incremental_top_30pct": incremental_in_top(score, treated, outcome, 0.3),
        "n_users": float(np.asarray(score).size),
    }
