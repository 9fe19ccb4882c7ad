"""The segment data model: what a predictive segment is, independent of how it was written down.

`segments_lib.language.segment_config` parses `conf/segments.yaml` into these frozen objects; every other
module (labels, features, training, scoring) reads only these.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any, Union

KINDS = ("conversion", "churn", "abandonment", "high_value", "engagement", "uplift", "custom")
# The named precision levels that have their own columns in the output tables (`member_<level>` in
# segment_membership, `members_<level>` / `threshold_<level>` in segment_runs). Other configured levels,
# and a segment's numeric level (e.g. 0.65 → 'p65'), only have the segment's own columns.
NAMED_LEVELS = ("high", "medium", "low")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """'12h' → 12 hours, '7d' → 7 days, '4w' → 28 days. Raises ValueError for anything else."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration (use e.g. 24h, 7d)")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"{text!r} must be positive")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """Shortest exact spelling: 7 days → '7d', 36 hours → '36h', 14 days → '2w' is kept as '14d'."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Occurs:
    """Any of `events` happens at least `min_count` times in P3 (optionally only values in a range)."""
    events: tuple[str, ...]
    min_count: int = 1
    value_at_least: float | None = None
    value_at_most: float | None = None


@dataclass(frozen=True)
class Absent:
    """None of `events` happens in P3 (churn)."""
    events: tuple[str, ...]


@dataclass(frozen=True)
class ValueSum:
    """Summed `event_value` of `events` in P3 is ≥ `at_least`, or in the top `top_fraction` of users."""
    events: tuple[str, ...]
    at_least: float | None = None
    top_fraction: float | None = None


@dataclass(frozen=True)
class Sequence:
    """`first` happens in P3 and is not followed by `then` within `within` (abandonment)."""
    first: str
    then: str
    within: timedelta


@dataclass(frozen=True)
class AllOf:
    terms: tuple[Target, ...]


@dataclass(frozen=True)
class AnyOf:
    terms: tuple[Target, ...]


Target = Union[Occurs, Absent, ValueSum, Sequence, AllOf, AnyOf]  # noqa: UP007 - recursive alias


def target_events(target: Target) -> tuple[str, ...]:
    """Every event name a target mentions, in first-seen order."""
    if isinstance(target, (Occurs, Absent, ValueSum)):
        names: tuple[str, ...] = target.events
    elif isinstance(target, Sequence):
        names = (target.first, target.then)
    else:
        names = tuple(n for term in target.terms for n in target_events(term))
    return tuple(dict.fromkeys(names))


def label_horizon(target: Target, prediction_window: timedelta) -> timedelta:
    """How far past T the label looks: P3, plus H for a sequence whose follow-up may land after P3."""
    if isinstance(target, Sequence):
        return prediction_window + target.within
    if isinstance(target, (AllOf, AnyOf)):
        return max(label_horizon(t, prediction_window) for t in target.terms)
    return prediction_window


@dataclass(frozen=True)
class Eligibility:
    """Who may be scored at T. Empty means every user seen before T."""
    active_in: timedelta | None = None
    has_done: tuple[str, ...] = ()
    not_done: tuple[str, ...] = ()
    lookback: timedelta | None = None  # has_done / not_done window; None means ever before T

    def describe(self) -> str:
        """'active_in 14d, has_done [Purchase Completed]' — how a log line or status reason names it."""
        parts = [f"active_in {format_duration(self.active_in)}"] if self.active_in is not None else []
        parts += [f"{key} [{', '.join(events)}]" for key, events in (("has_done", self.has_done),
                                                                    ("not_done", self.not_done)) if events]
        if self.lookback is not None and (self.has_done or self.not_done):
            parts.append(f"lookback {format_duration(self.lookback)}")
        return ", ".join(parts) or "every user seen before the snapshot"


def _gbt_param(default: Any, spark_name: str) -> Any:
    """A `GbtParams` field: its default and the Spark GBTClassifier parameter it sets."""
    return field(default=default, metadata={"spark": spark_name})


@dataclass(frozen=True)
class GbtParams:
    """The `training.gbt` settings of a segment; `spark_params()` hands them to Spark's GBTClassifier."""

    max_iter: int = _gbt_param(60, "maxIter")
    # Depth 3 and 50 rows per leaf: on Online Retail (benchmarks/RESULTS.md, issue 19) shallower, larger
    # leaves ranked next-period buyers better at every horizon than depth 5 / 20 rows (mean AUC-ROC
    # +0.03); sparse purchase data has little interaction structure for deep trees to find.
    max_depth: int = _gbt_param(3, "maxDepth")
    step_size: float = _gbt_param(0.1, "stepSize")
    subsampling_rate: float = _gbt_param(0.8, "subsamplingRate")
    min_instances_per_node: int = _gbt_param(50, "minInstancesPerNode")
    max_bins: int = _gbt_param(32, "maxBins")
    # Features each tree node considers: Spark's featureSubsetStrategy ("all", "onethird", "sqrt",
    # "log2" or a fraction in (0, 1]): a regulariser like LightGBM's colsample. Measured on the demo
    # (benchmarks/RESULTS.md) it neither sped Spark's GBT up nor raised AUC, hence "all".
    feature_subset: str = _gbt_param("all", "featureSubsetStrategy")

    def spark_params(self) -> dict[str, Any]:
        """GBTClassifier keyword arguments: {Spark parameter name: value}."""
        return {f.metadata["spark"]: getattr(self, f.name) for f in fields(self)}


# `training.trainer`: Spark ML's GBTClassifier or xgboost's Spark estimator (model/trainers.py).
TRAINERS = ("gbt", "xgboost")


@dataclass(frozen=True)
class TrainingSettings:
    """The `training` block of a segment; every field is part of what the model means (its fingerprint)."""

    snapshots: int = 4
    stride: timedelta = timedelta(days=7)
    gbt: GbtParams = field(default_factory=GbtParams)
    # Extra candidates for the time-based hyperparameter search; None: a small default grid around `gbt`,
    # an empty tuple: no search (the configured `gbt` only, one fit).
    search: tuple[GbtParams, ...] | None = None
    retrain_every: timedelta = timedelta(days=7)
    min_positives: int = 500
    min_negatives: int = 500
    seed: int = 42
    # "none": every row weighs 1; "balanced": positives weigh n_neg / n_pos. Re-weighting a rare class
    # skews the trees' split gains toward the few positives; on Online Retail, unweighted rows with
    # depth 3 / 50 rows per leaf ranked better than the balanced depth-5 / 20 model (benchmarks/RESULTS.md).
    # Calibration maps scores to probabilities either way, so "none" is the default.
    class_weight: str = "none"
    # For an `occurs` target, the ranking score can average the GBT's and the fitted BG/NBD's expected
    # rate of the target events, each as its training-rows quantile (model.blend). "auto": the
    # validation fold (the newest training snapshot) decides between the blend and the GBT alone, since
    # the blend helps on real purchase logs and hurts on data where the windows already say it all;
    # "bgnbd": always blend; "none": the GBT alone.
    score_blend: str = "auto"
    # The tree ensemble that learns the score: "gbt" is Spark ML's GBTClassifier, "xgboost" xgboost's own
    # Spark estimator (model/trainers.py), the same `gbt` settings translated. Either way the same
    # pipeline, calibration, thresholds, reasons and MLflow run follow.
    trainer: str = "gbt"


@dataclass(frozen=True)
class DurationPair:
    """Time from `first` to the next `then`, and how often `then` did not follow within `within`."""
    first: str
    then: str
    within: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class Treatment:
    """An uplift segment's exposure: one of `events` in [T, T + window) makes the user treated at T.

    The exposure must be randomized (a known share of users sent at random, the rest held back), so
    treated and untreated users at a snapshot differ only by the exposure (docs/concepts.md, "Uplift").
    """
    events: tuple[str, ...]
    window: timedelta = timedelta(days=1)


# The default look-back of the whole-history features: a year covers a yearly purchase cycle, and keeps a
# night's read bounded once the events hold more than a year (docs/configuration.md, `feature_history`).
DEFAULT_FEATURE_HISTORY = timedelta(days=365)


@dataclass(frozen=True)
class SegmentDefinition:
    name: str
    kind: str
    target: Target
    past_window: timedelta
    prediction_window: timedelta
    precision_level: str | float = "medium"
    feature_windows: tuple[timedelta, ...] = ()
    feature_events: tuple[str, ...] | None = None  # None: every event seen (or the `top_events` most frequent)
    top_events: int | None = None
    duration_pairs: tuple[DurationPair, ...] = ()
    eligible: Eligibility = field(default_factory=Eligibility)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    description: str = ""
    # How far before T tenure, recency and the customer-base features look (events in [T − h, T)); at
    # least P1. Bounded so that a night reads a window of the events, not their whole history (issue 20).
    feature_history: timedelta = DEFAULT_FEATURE_HISTORY
    treatment: Treatment | None = None  # kind: uplift only

    @property
    def history(self) -> timedelta:
        """The features' whole-history look-back: `feature_history`, never shorter than P1."""
        return max(self.feature_history, self.past_window)

    @property
    def horizon(self) -> timedelta:
        return label_horizon(self.target, self.prediction_window)

    @property
    def windows(self) -> tuple[timedelta, ...]:
        """Feature windows: configured ones, else 1d, 7d and P1 (deduplicated, ascending)."""
        chosen = self.feature_windows or (timedelta(days=1), timedelta(days=7), self.past_window)
        return tuple(sorted({w for w in chosen if w <= self.past_window} | {self.past_window}))

    def promised_precision(self, levels: Mapping[str, float]) -> float:
        """The number behind this segment's precision level."""
        if isinstance(self.precision_level, str):
            return levels[self.precision_level]
        return float(self.precision_level)

    def level_name(self) -> str:
        if isinstance(self.precision_level, str):
            return self.precision_level
        # An uplift segment's number is the share of users it targets, not a precision: top20, not p20.
        prefix = "top" if self.treatment is not None else "p"
        return f"{prefix}{round(float(self.precision_level) * 100):02d}"


# An uplift segment's levels are top shares of the users ranked by predicted uplift: a precision promise
# means nothing there (the members' outcome rate is not the campaign's effect). High is the smallest,
# most responsive share, as a high precision level is the smallest, most accurate set.
UPLIFT_SHARES = {"high": 0.1, "medium": 0.3, "low": 0.5}


def uplift_shares(segment: SegmentDefinition) -> dict[str, float]:
    """The named levels' top shares, plus the segment's own when its `precision_level` is a number (a share)."""
    own = segment.precision_level
    return {**UPLIFT_SHARES, segment.level_name(): UPLIFT_SHARES[own] if isinstance(own, str) else float(own)}


def segment_levels(levels: Mapping[str, float], segment: SegmentDefinition) -> dict[str, float]:
    """Every configured level, plus the segment's own when it is a number rather than a level name."""
    return {**levels, segment.level_name(): segment.promised_precision(levels)}
