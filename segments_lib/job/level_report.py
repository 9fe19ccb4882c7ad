"""What each precision level means tonight, for the end-of-run summary: threshold, promise, lift, size.

A marketer picks a level by trading precision for reach, so the summary shows every level of a
segment side by side: the threshold, the held-out precision and its lower bound (what the level
promises), the lift over the base rate, and how many users it selects tonight. When the segment's own
level cannot be reached, `reachable_hint` says what can: the strictest reachable named level and the
strictest number the model's stored evidence supports by the training rule, each with tonight's size,
so the next step is obvious (a new number takes effect without a retrain, job.stages.with_segment_level).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from segments_lib.promise.calibration import precision_lower_bounds


@dataclass(frozen=True)
class LevelSummary:
    level: str
    target_precision: float
    threshold: float | None  # None: unreachable
    expected_precision: float | None  # held-out precision at the threshold (choice half)
    precision_lower: float | None  # its one-sided lower confidence bound
    members: int | None  # tonight's members at this level; None when not counted
    best_precision: float | None = None  # an unreachable level: the most precise large-enough set
    best_precision_members: int | None = None


def level_summaries(targets: Mapping[str, float], thresholds: Mapping[str, float | None],
                    promises: Mapping[str, Mapping[str, Any]] | None,
                    members: Mapping[str, int]) -> tuple[LevelSummary, ...]:
    """One row per level, strictest first. `promises` is the model's thresholds.json (None: not readable)."""
    rows = []
    for level, target in sorted(targets.items(), key=lambda kv: (-kv[1], kv[0])):
        promise = (promises or {}).get(level) or {}
        rows.append(LevelSummary(
            level=level, target_precision=float(target), threshold=thresholds.get(level),
            expected_precision=_float(promise.get("expected_precision")),
            precision_lower=_float(promise.get("precision_lower")),
            members=members.get(level),
            best_precision=_float(promise.get("best_precision")),
            best_precision_members=_int(promise.get("best_precision_members")),
        ))
    return tuple(rows)


def curve_base_rate(curve: pd.DataFrame) -> float | None:
    """The held-out base rate: the precision of the curve's lowest threshold, which selects everyone."""
    if curve.empty:
        return None
    return float(curve.sort_values("threshold")["precision"].iloc[0])


def strictest_number(choice_table: pd.DataFrame, min_segment_size: int, confidence: float,
                     ) -> tuple[float, float] | None:
    """(p, threshold): the largest hundredth p that `calibration.choose_levels` would reach, and its threshold.

    The same rule as training, on the same stored choice-half table: the lowest threshold whose
    Clopper–Pearson bound is at least p with at least half of `min_segment_size` members. None when no
    threshold supports any precision above 0.
    """
    if choice_table.empty:
        return None
    members = choice_table["members"].to_numpy()
    lower = precision_lower_bounds(choice_table["true_positives"].to_numpy(), members, confidence)
    large = members >= max(1, min_segment_size // 2)
    if not large.any():
        return None
    number = math.floor(float(lower[large].max()) * 100 + 1e-9) / 100
    if number <= 0:
        return None
    qualifies = large & (lower >= number - 1e-12)
    return number, float(choice_table["threshold"].to_numpy()[qualifies].min())


def reachable_hint(levels: tuple[LevelSummary, ...], number: tuple[float, float] | None,
                   members_at_number: int | None) -> str:
    """What the segment could promise instead: the strictest reachable named level, and the strictest number.

    `number` is `strictest_number` on the model's stored evidence (None: not available), and
    `members_at_number` tonight's users at or above its threshold.
    """
    parts = []
    reachable = [lv for lv in levels if lv.threshold is not None]
    if reachable:
        best = max(reachable, key=lambda lv: lv.target_precision)
        size = "" if best.members is None else f", {best.members:,} members tonight"
        parts.append(f"strictest reachable level: {best.level} ({best.target_precision:.2f}{size})")
    if number is not None:
        size = "" if members_at_number is None else f", {members_at_number:,} members tonight"
        parts.append(f"precision_level: {number[0]:.2f} is reachable with this model (threshold {number[1]:.4f}{size})")
    return "; ".join(parts) if parts else "no threshold of the held-out evidence supports a promise"


def format_levels(levels: tuple[LevelSummary, ...], base_rate: float | None, indent: str) -> list[str]:
    """The per-level lines under a segment's summary row."""
    header = (f"{indent}{'level':<8} {'promise':>7} {'threshold':>9} {'precision':>9} {'bound':>6} "
              f"{'lift':>6} {'members':>8}")
    lines = [header]
    for lv in levels:
        if lv.threshold is None:
            best = ("" if lv.best_precision is None else
                    f"  (best held-out precision {lv.best_precision:.2f} at {lv.best_precision_members or 0:,} users)")
            lines.append(f"{indent}{lv.level:<8} {lv.target_precision:>7.2f} {'unreachable':>9}{best}")
            continue
        lift = (f"{lv.expected_precision / base_rate:>5.1f}x" if base_rate and lv.expected_precision is not None
                else f"{'-':>6}")
        lines.append(
            f"{indent}{lv.level:<8} {lv.target_precision:>7.2f} {lv.threshold:>9.4f} {_fmt(lv.expected_precision):>9} "
            f"{_fmt(lv.precision_lower):>6} {lift} {_count(lv.members):>8}")
    if base_rate is not None:
        lines.append(f"{indent}base rate {base_rate:.3f} (held out): the precision of targeting everyone eligible")
    return lines


def format_uplift_levels(promises: Mapping[str, Mapping[str, Any]] | None, members: Mapping[str, int],
                         holdout_qini: float | None, indent: str) -> list[str]:
    """The per-level lines of an uplift segment: share, threshold, the holdout's uplift and 95 % CI, size.

    `promises` is the uplift model's thresholds.json (level → share, threshold, uplift, uplift_lower,
    uplift_upper); the expected gain is the held-out uplift × tonight's members, were they all contacted.
    """
    header = (f"{indent}{'level':<8} {'share':>5} {'threshold':>9} {'uplift':>7} {'95% CI':>17} "
              f"{'members':>8} {'+conversions':>12}")
    lines = [header]
    rows = sorted((promises or {}).items(), key=lambda kv: (float(kv[1].get("share", 1.0)), kv[0]))
    for level, promise in rows:
        uplift, low, high = (_float(promise.get(k)) for k in ("uplift", "uplift_lower", "uplift_upper"))
        threshold, size = _float(promise.get("threshold")), members.get(level)
        interval = "-" if low is None or high is None else f"[{low:+.3f}, {high:+.3f}]"
        gain = "-" if uplift is None or size is None else f"{uplift * size:+.1f}"
        lines.append(f"{indent}{level:<8} {float(promise.get('share', 0.0)):>5.0%} "
                     f"{'-' if threshold is None else f'{threshold:.4f}':>9} "
                     f"{'-' if uplift is None else f'{uplift:+.3f}':>7} {interval:>17} {_count(size):>8} {gain:>12}")
    if holdout_qini is not None:
        lines.append(f"{indent}holdout Qini coefficient {holdout_qini:.4f} (random targeting: 0); uplift = treated "
                     "minus control outcome rate above the threshold, held out")
    return lines


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
