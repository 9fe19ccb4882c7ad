"""A segment definition's fingerprint: what a trained model means, so a changed definition retrains.

A model answers one question: this target, over these windows, for this population, from these
features, trained this way. Each part gets its own hash, so a night can say *what* changed since the
champion was trained ("target, training"), not only that something did. The name, description, kind
and precision level are not part of it: renaming nothing changes the model, and a level is a threshold
on the same scores (the night computes a new level's threshold from the held-out evidence).
`training.retrain_every`, `min_positives` and `min_negatives` only decide *when* to train, not what.

`training.trainer` (Spark's GBT or xgboost) is a part of its own: a new trainer retrains, but the
question stays the same, so its model must beat the champion on the same holdout to replace it
(`question_changes`), where a changed target or window replaces a champion that answered another question.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from segments_lib.language.definitions import SegmentDefinition

PARTS = ("target", "windows", "eligibility", "features", "training", "trainer")
_WHEN_NOT_WHAT = ("retrain_every", "min_positives", "min_negatives")
_OWN_PART = ("trainer",)  # training settings hashed as parts of their own
SAME_QUESTION = ("trainer",)  # parts whose change retrains but keeps the champion comparable


def canonical(value: Any) -> Any:
    """A JSON-ready form in which equal definitions are equal: dataclasses keep their type's name (an
    `occurs` and an `absent` of the same events differ), durations are seconds, tuples lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"type": type(value).__name__, **fields}
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items())}
    return value


def definition_parts(segment: SegmentDefinition) -> dict[str, Any]:
    training = {k: v for k, v in canonical(segment.training).items() if k not in (*_WHEN_NOT_WHAT, *_OWN_PART)}
    return {
        # An uplift segment's exposure is part of its question: who responds to *this* treatment.
        "target": canonical(segment.target) if segment.treatment is None else {
            "outcome": canonical(segment.target), "treatment": canonical(segment.treatment)},
        "windows": {"past_window": canonical(segment.past_window),
                    "prediction_window": canonical(segment.prediction_window)},
        "eligibility": canonical(segment.eligible),
        "features": {"windows": canonical(segment.windows), "feature_events": canonical(segment.feature_events),
                     "top_events": segment.top_events, "duration_pairs": canonical(segment.duration_pairs),
                     "history": canonical(segment.history)},
        "training": training,
        "trainer": segment.training.trainer,
    }


def fingerprint(segment: SegmentDefinition) -> dict[str, str]:
    """{part: first 16 hex digits of the sha256 of its canonical JSON}, for every part in PARTS."""
    return {part: _digest(value) for part, value in definition_parts(segment).items()}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


# What a model whose fingerprint predates a part was trained with: every model before `trainer` was a GBT.
_BEFORE_THE_PART = {"trainer": _digest("gbt")}


def changed_parts(trained_with: Mapping[str, str] | None, now: Mapping[str, str]) -> list[str]:
    """The parts that differ, in PARTS order; empty when equal or when the model predates fingerprints."""
    if not trained_with:
        return []
    return [part for part in PARTS if trained_with.get(part, _BEFORE_THE_PART.get(part)) != now.get(part)]


def question_changes(trained_with: Mapping[str, str] | None, now: Mapping[str, str]) -> list[str]:
    """The changed parts that make a champion answer another question (`changed_parts` less SAME_QUESTION)."""
    return [part for part in changed_parts(trained_with, now) if part not in SAME_QUESTION]
