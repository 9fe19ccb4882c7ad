"""Diagnostic PNGs for a training run: ROC and PR curves, reliability, feature importances (matplotlib Agg).

Figures are built with the object API (`Figure`), never pyplot: pyplot keeps global state, and the
nightly job trains segments in parallel threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def roc_pr_points(scores: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """One row per distinct score threshold (descending): fpr, tpr (recall) and precision of `score >= t`."""
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order].astype(float)
    last_of_tie = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    true_pos = np.cumsum(labels)[last_of_tie]
    false_pos = (last_of_tie + 1) - true_pos
    positives, negatives = max(labels.sum(), 1.0), max(len(labels) - labels.sum(), 1.0)
    return pd.DataFrame({
        "threshold": scores[last_of_tie],
        "fpr": false_pos / negatives,
        "tpr": true_pos / positives,
        "precision": true_pos / (true_pos + false_pos),
    })


def roc_pr_png(scores: np.ndarray, labels: np.ndarray, auc_roc: float, auc_pr: float, path: Path) -> Path:
    points = roc_pr_points(scores, labels)
    fig = Figure(figsize=(10, 4.5))
    roc, pr = fig.subplots(1, 2)
    roc.plot(np.r_[0.0, points["fpr"]], np.r_[0.0, points["tpr"]], label=f"AUC-ROC {auc_roc:.3f}")
    roc.plot([0, 1], [0, 1], linestyle="--", color="grey")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (holdout)")
    roc.legend(loc="lower right")
    pr.plot(points["tpr"], points["precision"], label=f"AUC-PR {auc_pr:.3f}")
    pr.axhline(labels.mean(), linestyle="--", color="grey", label=f"base rate {labels.mean():.3f}")
    pr.set(xlabel="recall", ylabel="precision", title="Precision-recall (holdout)", ylim=(0, 1.02))
    pr.legend(loc="upper right")
    return _save(fig, path)


def reliability_png(reliability: pd.DataFrame, path: Path) -> Path:
    """`reliability` rows: kind (raw | calibrated), mean_predicted, observed_rate, rows."""
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    for kind, group in reliability.groupby("kind"):
        ax.plot(group["mean_predicted"], group["observed_rate"], marker="o", label=str(kind))
    ax.set(xlabel="mean predicted probability", ylabel="observed positive rate", title="Reliability (holdout)",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    return _save(fig, path)


def feature_importance_png(importances: Sequence[tuple[str, float]], path: Path, top: int = 20) -> Path:
    shown = list(importances)[:top][::-1]  # barh draws bottom-up; the most important goes on top
    fig = Figure(figsize=(8, 0.35 * max(len(shown), 4) + 1))
    ax = fig.subplots()
    ax.barh([name for name, _ in shown], [weight for _, weight in shown])
    ax.set(xlabel="importance (share of split gain)", title=f"Top {len(shown)} features")
    return _save(fig, path)


def qini_png(curve: pd.DataFrame, treated_users: float, qini: float, path: Path) -> Path:
    """`curve` from uplift_metrics.qini_curve: the model's Qini curve against random targeting."""
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    x, q = curve["fraction"].to_numpy(), curve["qini"].to_numpy() / max(treated_users, 1.0)
    ax.plot(x, q, label=f"model (Qini coefficient {qini:.4f})")
    ax.plot([0, 1], [0, q[-1]], linestyle="--", color="grey", label="random targeting")
    ax.set(xlabel="share of users targeted, by predicted uplift",
           ylabel="incremental conversions per treated user", title="Qini curve (holdout)")
    ax.legend(loc="lower right")
    return _save(fig, path)


def uplift_deciles_png(deciles: pd.DataFrame, path: Path) -> Path:
    """`deciles` from uplift_metrics.uplift_by_decile: realised uplift per predicted-uplift decile, 95 % CI."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    uplift = deciles["uplift"].to_numpy()
    error = np.vstack([uplift - deciles["uplift_low"].to_numpy(), deciles["uplift_high"].to_numpy() - uplift])
    ax.bar(deciles["decile"], uplift, yerr=error, capsize=3)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set(xlabel="decile of predicted uplift (1 = highest)", ylabel="treated rate − control rate",
           title="Realised uplift by decile (holdout, 95 % CI)", xticks=list(deciles["decile"]))
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)  # a bare Figure renders with the Agg canvas: no display needed
    return path
