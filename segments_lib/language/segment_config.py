"""`conf/segments.yaml` → `SegmentDefinition`s, with errors that name the file, the segment and the key.

Every message has the shape
`segments.yaml: segments[2] 'cart_abandonment': target.sequence.within: '24x' is not a duration (use e.g. 24h, 7d)`
so a typo is found in the file without reading code. `ACCEPTED_KEYS` is the one list of keys the
parser accepts per section; docs/configuration.md is tested against it so the reference cannot drift.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from dataclasses import fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from segments_lib.config import ConfigError, read_yaml, suggest
from segments_lib.language.definitions import (
    DEFAULT_FEATURE_HISTORY,
    KINDS,
    TRAINERS,
    UPLIFT_SHARES,
    Absent,
    AllOf,
    AnyOf,
    DurationPair,
    Eligibility,
    GbtParams,
    Occurs,
    SegmentDefinition,
    Sequence,
    Target,
    TrainingSettings,
    Treatment,
    ValueSum,
    format_duration,
    parse_duration,
)
from segments_lib.locations import Location, LocationError

SEGMENT_NAME = re.compile(r"^[a-z0-9_]+$")

TARGET_TERMS = ("occurs", "absent", "value_sum", "sequence", "all_of", "any_of")

ACCEPTED_KEYS: Mapping[str, tuple[str, ...]] = {
    "file": ("segments",),
    "segment": (
        "name", "kind", "description", "target", "past_window", "prediction_window", "precision_level",
        "feature_windows", "feature_events", "top_events", "duration_pairs", "eligible", "training",
        "feature_history", "treatment",
    ),
    "treatment": ("events", "window"),
    "target": TARGET_TERMS,
    "occurs": ("events", "min_count", "value_at_least", "value_at_most"),
    "absent": ("events",),
    "value_sum": ("events", "at_least", "top_fraction"),
    "sequence": ("first", "then", "within"),
    "duration_pairs": ("first", "then", "within"),
    "eligible": ("active_in", "has_done", "not_done", "lookback"),
    "training": ("snapshots", "stride", "gbt", "search", "retrain_every", "min_positives", "min_negatives", "seed",
                 "class_weight", "score_blend", "trainer"),
    "gbt": tuple(f.name for f in fields(GbtParams)),
}


class SegmentConfigError(ConfigError):
    """A segment definition is invalid; the message names the file, the segment and the key path."""


class _Node:
    """One value of the file, remembering where it sits so errors can say so."""
    def __init__(self, where: str, path: str, value: Any) -> None:
        self.where, self.path, self.value = where, path, value

    def fail(self, message: str) -> SegmentConfigError:
        return SegmentConfigError(f"{self.where}: {self.path}: {message}" if self.path else f"{self.where}: {message}")

    def child(self, key: str | int) -> _Node:
        step = f"[{key}]" if isinstance(key, int) else (f".{key}" if self.path else key)
        value = self.value[key] if isinstance(key, int) else self.value.get(key)
        return _Node(self.where, f"{self.path}{step}", value)

    def mapping(self, section: str) -> _Node:
        """Check this is a mapping whose keys are all in ACCEPTED_KEYS[section]."""
        if not isinstance(self.value, Mapping):
            raise self.fail(f"must be a mapping with keys {', '.join(ACCEPTED_KEYS[section])}, "
                            f"found {_describe(self.value)}")
        allowed = ACCEPTED_KEYS[section]
        for key in self.value:
            if key not in allowed:
                raise self.child(str(key)).fail(
                    f"unknown key{suggest(str(key), allowed)}; valid keys: {', '.join(allowed)}"
                )
        return self

    def has(self, key: str) -> bool:
        return isinstance(self.value, Mapping) and self.value.get(key) is not None

    def required(self, key: str) -> _Node:
        if not self.has(key):
            raise self.child(key).fail("is required")
        return self.child(key)


def _describe(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


def _text(node: _Node) -> str:
    if not isinstance(node.value, str) or not node.value.strip():
        raise node.fail(f"must be a non-empty string, found {_describe(node.value)}")
    return node.value.strip()


def _event_list(node: _Node) -> tuple[str, ...]:
    """An event name or a non-empty list of them."""
    if isinstance(node.value, str):
        return (_text(node),)
    if not isinstance(node.value, list) or not node.value:
        raise node.fail(f"must be an event name or a non-empty list of event names, found {_describe(node.value)}")
    return tuple(dict.fromkeys(_text(node.child(i)) for i in range(len(node.value))))


def _duration(node: _Node) -> timedelta:
    text = str(node.value).strip()
    if text.startswith("-") or re.fullmatch(r"0+(\.0*)?\s*[smhdw]", text):
        raise node.fail(f"'{text}' must be a positive duration (use e.g. 24h, 7d)")
    if isinstance(node.value, bool) or not isinstance(node.value, str):
        raise node.fail(f"{node.value!r} is not a duration (write it with a unit, e.g. 24h, 7d, 4w)")
    try:
        return parse_duration(text)
    except ValueError:
        raise node.fail(f"'{text}' is not a duration (use e.g. 24h, 7d)") from None


def _int(node: _Node, minimum: int) -> int:
    if isinstance(node.value, bool) or not isinstance(node.value, int) or node.value < minimum:
        raise node.fail(f"must be a whole number ≥ {minimum}, found {_describe(node.value)}")
    return node.value


def _number(node: _Node) -> float:
    if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
        raise node.fail(f"must be a number, found {_describe(node.value)}")
    return float(node.value)


def _fraction(node: _Node) -> float:
    value = _number(node)
    if not 0.0 < value < 1.0:
        raise node.fail(f"must be a number in (0, 1), found {node.value!r}")
    return value


def _optional(node: _Node, key: str, parse: Any, *args: Any) -> Any:
    return parse(node.child(key), *args) if node.has(key) else None


# ---------------------------------------------------------------- targets


def _target(node: _Node) -> Target:
    node.mapping("target")
    present = [term for term in TARGET_TERMS if term in node.value]
    if len(present) != 1:
        found = f"found {', '.join(present)}" if present else "found none"
        raise node.fail(f"must have exactly one of {', '.join(TARGET_TERMS)} ({found}); "
                        "combine several terms with all_of / any_of")
    term = present[0]
    body = node.child(term)
    if term in ("all_of", "any_of"):
        if not isinstance(body.value, list) or not body.value:
            raise body.fail(f"must be a non-empty list of targets, found {_describe(body.value)}")
        terms = tuple(_target(body.child(i)) for i in range(len(body.value)))
        return AllOf(terms) if term == "all_of" else AnyOf(terms)
    if term == "occurs":
        return _occurs(body)
    if term == "absent":
        return Absent(_event_list(body.mapping("absent").required("events")))
    if term == "value_sum":
        return _value_sum(body)
    body.mapping("sequence")
    return Sequence(
        first=_text(body.required("first")),
        then=_text(body.required("then")),
        within=_duration(body.required("within")),
    )


def _occurs(body: _Node) -> Occurs:
    body.mapping("occurs")
    low = _optional(body, "value_at_least", _number)
    high = _optional(body, "value_at_most", _number)
    if low is not None and high is not None and low > high:
        raise body.child("value_at_most").fail(f"{high} is below value_at_least {low}; no value could match")
    return Occurs(
        events=_event_list(body.required("events")),
        min_count=_optional(body, "min_count", _int, 1) or 1,
        value_at_least=low,
        value_at_most=high,
    )


def _value_sum(body: _Node) -> ValueSum:
    body.mapping("value_sum")
    if body.has("at_least") == body.has("top_fraction"):
        raise body.fail("needs exactly one of at_least (a sum, e.g. 150) or top_fraction (e.g. 0.1 for the top decile)")
    return ValueSum(
        events=_event_list(body.required("events")),
        at_least=_optional(body, "at_least", _number),
        top_fraction=_optional(body, "top_fraction", _fraction),
    )


# ---------------------------------------------------------------- the rest of a segment


def _precision_level(node: _Node, levels: Mapping[str, float]) -> str | float:
    if node.value is None:
        return "medium" if "medium" in levels else next(iter(levels))
    if isinstance(node.value, str):
        if node.value in levels:
            return node.value
        raise node.fail(f"unknown level '{node.value}'{suggest(node.value, tuple(levels))}; "
                        f"use one of {', '.join(levels)} or a number in (0, 1)")
    if isinstance(node.value, bool) or not isinstance(node.value, (int, float)) or not 0 < node.value < 1:
        raise node.fail(f"must be one of {', '.join(levels)} or a number in (0, 1), found {node.value!r}")
    return float(node.value)


def _uplift_level(node: _Node) -> str | float:
    """An uplift segment's level: a named top share (high 10 %, medium 30 %, low 50 %) or a share in (0, 1)."""
    named = ", ".join(f"{name} (top {share:.0%})" for name, share in UPLIFT_SHARES.items())
    if node.value is None:
        return "medium"
    if isinstance(node.value, str):
        if node.value in UPLIFT_SHARES:
            return node.value
        hint = suggest(node.value, tuple(UPLIFT_SHARES))
        raise node.fail(f"unknown level '{node.value}' for an uplift segment{hint}; use {named}, "
                        "or the share of users to target as a number in (0, 1)")
    if isinstance(node.value, bool) or not isinstance(node.value, (int, float)) or not 0 < node.value < 1:
        raise node.fail(f"an uplift segment's level is {named}, or a share in (0, 1); found {node.value!r}")
    return float(node.value)


def _duration_pairs(node: _Node) -> tuple[DurationPair, ...]:
    if not isinstance(node.value, list):
        raise node.fail(
            f"must be a list of pairs such as [Add to Cart, Purchase Completed], found {_describe(node.value)}")
    pairs = []
    for i, item in enumerate(node.value):
        entry = node.child(i)
        if isinstance(item, list):
            if len(item) != 2:
                raise entry.fail(f"a pair needs exactly two event names [first, then], found {len(item)}")
            pairs.append(DurationPair(_text(entry.child(0)), _text(entry.child(1))))
            continue
        entry.mapping("duration_pairs")
        within = _optional(entry, "within", _duration) or DurationPair.within
        pairs.append(DurationPair(_text(entry.required("first")), _text(entry.required("then")), within))
    return tuple(pairs)


def _treatment(node: _Node, kind: str, prediction_window: timedelta) -> Treatment | None:
    """The exposure of an uplift segment: required for `kind: uplift`, refused for every other kind."""
    if node.value is None:
        if kind == "uplift":
            raise node.fail("is required for kind: uplift, e.g. {events: [Campaign Sent], window: 1d}")
        return None
    if kind != "uplift":
        raise node.fail(f"only an uplift segment has a treatment; this segment's kind is '{kind}'")
    node.mapping("treatment")
    window = _optional(node, "window", _duration) or timedelta(days=1)
    if window > prediction_window:
        raise node.child("window").fail(f"{format_duration(window)} is longer than prediction_window "
                                        f"{format_duration(prediction_window)}: the exposure must open the window "
                                        "its outcome is judged in")
    return Treatment(events=_event_list(node.required("events")), window=window)


def _eligible(node: _Node) -> Eligibility:
    if node.value is None:
        return Eligibility()
    node.mapping("eligible")
    return Eligibility(
        active_in=_optional(node, "active_in", _duration),
        has_done=_event_list(node.child("has_done")) if node.has("has_done") else (),
        not_done=_event_list(node.child("not_done")) if node.has("not_done") else (),
        lookback=_optional(node, "lookback", _duration),
    )


def _gbt(node: _Node, defaults: GbtParams) -> GbtParams:
    node.mapping("gbt")
    values: dict[str, Any] = {}
    for f in fields(GbtParams):
        if not node.has(f.name):
            values[f.name] = getattr(defaults, f.name)
        elif f.name == "feature_subset":
            values[f.name] = _feature_subset(node.child(f.name))
        elif f.name in ("step_size", "subsampling_rate"):
            value = _number(node.child(f.name))
            if not 0 < value <= 1:
                raise node.child(f.name).fail(f"must be in (0, 1], found {value}")
            values[f.name] = value
        else:
            values[f.name] = _int(node.child(f.name), 2 if f.name == "max_bins" else 1)
    return GbtParams(**values)


FEATURE_SUBSETS = ("all", "onethird", "sqrt", "log2")


def _feature_subset(node: _Node) -> str:
    value = node.value
    if isinstance(value, str) and value in FEATURE_SUBSETS:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1:
        return repr(float(value))
    raise node.fail(f"must be one of {', '.join(FEATURE_SUBSETS)} or a fraction in (0, 1], "
                    f"found {_describe(value)}")


def _training(node: _Node) -> TrainingSettings:
    if node.value is None:
        return TrainingSettings()
    node.mapping("training")
    base = TrainingSettings()
    gbt = _gbt(node.child("gbt"), base.gbt) if node.has("gbt") else base.gbt
    search: tuple[GbtParams, ...] | None = None
    if node.has("search"):
        search_node = node.child("search")
        if not isinstance(search_node.value, list):
            raise search_node.fail(f"must be a list of gbt parameter sets, found {_describe(search_node.value)}")
        search = tuple(_gbt(search_node.child(i), gbt) for i in range(len(search_node.value)))
    return TrainingSettings(
        snapshots=_optional(node, "snapshots", _int, 1) or base.snapshots,
        stride=_optional(node, "stride", _duration) or base.stride,
        gbt=gbt,
        search=search,
        retrain_every=_optional(node, "retrain_every", _duration) or base.retrain_every,
        min_positives=_optional(node, "min_positives", _int, 0) if node.has("min_positives") else base.min_positives,
        min_negatives=_optional(node, "min_negatives", _int, 0) if node.has("min_negatives") else base.min_negatives,
        seed=_optional(node, "seed", _int, 0) if node.has("seed") else base.seed,
        class_weight=_choice(node, "class_weight", CLASS_WEIGHTS, base.class_weight),
        score_blend=_choice(node, "score_blend", SCORE_BLENDS, base.score_blend),
        trainer=_choice(node, "trainer", TRAINERS, base.trainer),
    )


CLASS_WEIGHTS = ("none", "balanced")
SCORE_BLENDS = ("auto", "bgnbd", "none")


def _choice(node: _Node, key: str, choices: tuple[str, ...], default: str) -> str:
    if not node.has(key):
        return default
    child = node.child(key)
    if isinstance(child.value, str) and child.value in choices:
        return child.value
    raise child.fail(f"must be one of {', '.join(choices)}, found {_describe(child.value)}")


def _feature_windows(node: _Node) -> tuple[timedelta, ...]:
    if not isinstance(node.value, list) or not node.value:
        raise node.fail(f"must be a non-empty list of durations such as [1d, 7d, 28d], found {_describe(node.value)}")
    return tuple(_duration(node.child(i)) for i in range(len(node.value)))


def _feature_history(node: _Node, past_window: timedelta) -> timedelta:
    history = _optional(node, "feature_history", _duration)
    if history is None:
        return DEFAULT_FEATURE_HISTORY
    if history < past_window:
        raise node.child("feature_history").fail(
            f"{format_duration(history)} is shorter than past_window {format_duration(past_window)}")
    return history


def _segment(node: _Node, levels: Mapping[str, float]) -> SegmentDefinition:
    node.mapping("segment")
    kind = _text(node.child("kind")) if node.has("kind") else "custom"
    if kind not in KINDS:
        raise node.child("kind").fail(f"'{kind}' is not a kind{suggest(kind, KINDS)}; use one of {', '.join(KINDS)}")
    past_window = _duration(node.required("past_window"))
    prediction_window = _duration(node.required("prediction_window"))
    feature_windows = _optional(node, "feature_windows", _feature_windows) or ()
    for i, window in enumerate(feature_windows):
        if window > past_window:
            raise node.child("feature_windows").child(i).fail(
                f"{format_duration(window)} is longer than past_window {format_duration(past_window)}")
    return SegmentDefinition(
        name=node.child("name").value,
        kind=kind,
        target=_target(node.required("target")),
        past_window=past_window,
        prediction_window=prediction_window,
        precision_level=(_uplift_level(node.child("precision_level")) if kind == "uplift"
                         else _precision_level(node.child("precision_level"), levels)),
        feature_windows=feature_windows,
        feature_events=_event_list(node.child("feature_events")) if node.has("feature_events") else None,
        top_events=_optional(node, "top_events", _int, 1),
        duration_pairs=_duration_pairs(node.child("duration_pairs")) if node.has("duration_pairs") else (),
        eligible=_eligible(node.child("eligible")),
        training=_training(node.child("training")),
        description=_text(node.child("description")) if node.has("description") else "",
        feature_history=_feature_history(node, past_window),
        treatment=_treatment(node.child("treatment"), kind, prediction_window),
    )


# ---------------------------------------------------------------- checks against the data


def _named_events(node: _Node) -> list[tuple[str, str]]:
    """(key path, event name) for every event the raw segment mentions, for errors that point at the key."""
    found: list[tuple[str, str]] = []

    def walk(n: _Node) -> None:
        if isinstance(n.value, Mapping):
            for key in n.value:
                child = n.child(str(key))
                if key in ("events", "has_done", "not_done", "feature_events", "first", "then"):
                    names = [child.value] if isinstance(child.value, str) else child.value
                    found.extend((child.path, name) for name in names or [] if isinstance(name, str))
                else:
                    walk(child)
        elif isinstance(n.value, list):
            for i, item in enumerate(n.value):
                if isinstance(item, list) and n.path.endswith("duration_pairs"):
                    found.extend((f"{n.path}[{i}]", name) for name in item if isinstance(name, str))
                else:
                    walk(n.child(i))

    walk(node)
    return found


def _check_known_events(node: _Node, known_events: Collection[str]) -> None:
    known = sorted(known_events)
    for path, name in _named_events(node):
        if name.strip() not in known_events:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6) or known[:5]
            raise _Node(node.where, path, None).fail(
                f"event '{name}' never occurs in the events table; closest existing names: "
                + ", ".join(f"'{c}'" for c in close)
            )


def _check_history(node: _Node, segment: SegmentDefinition, history: tuple[datetime, datetime]) -> None:
    span = history[1] - history[0]
    windows: list[tuple[str, timedelta]] = [
        ("past_window", segment.past_window),
        ("prediction_window", segment.prediction_window),
    ]
    if segment.horizon != segment.prediction_window:
        windows.append(("prediction_window", segment.horizon))
    if segment.eligible.active_in:
        windows.append(("eligible.active_in", segment.eligible.active_in))
    for path, window in windows:
        if window > span:
            raise _Node(node.where, path, None).fail(
                f"{format_duration(window)} is longer than the events' whole history "
                f"({format_duration(span)}: {history[0]:%Y-%m-%d %H:%M} to {history[1]:%Y-%m-%d %H:%M} UTC)"
                + (" once the sequence's follow-up time is added" if window != segment.prediction_window
                   and path == "prediction_window" else "")
            )


# ---------------------------------------------------------------- entry points


def parse_segments(
    data: Any,
    source: str,
    levels: Mapping[str, float],
    known_events: Collection[str] | None = None,
    history: tuple[datetime, datetime] | None = None,
) -> tuple[SegmentDefinition, ...]:
    """Parse the loaded YAML of a segments file; `source` is the file name used in messages."""
    top = _Node(source, "", data).mapping("file")
    listing = top.required("segments")
    if not isinstance(listing.value, list) or not listing.value:
        raise listing.fail(f"must be a non-empty list of segments, found {_describe(listing.value)}")
    parsed: list[SegmentDefinition] = []
    first_index: dict[str, int] = {}
    for i, raw in enumerate(listing.value):
        raw_name = raw.get("name") if isinstance(raw, Mapping) else None
        where = f"{source}: segments[{i}]" + (f" '{raw_name}'" if isinstance(raw_name, str) else "")
        node = _Node(where, "", raw)
        if not isinstance(raw, Mapping):
            raise node.fail(f"must be a mapping with at least name, target, past_window and prediction_window, "
                            f"found {_describe(raw)}")
        if not isinstance(raw_name, str) or not SEGMENT_NAME.fullmatch(raw_name):
            raise node.child("name").fail(
                f"{raw_name!r} is not a valid segment name: use lowercase letters, digits and _ "
                "(it becomes a table partition value and an MLflow model name)"
            )
        if raw_name in first_index:
            raise node.child("name").fail(f"duplicate segment name; segments[{first_index[raw_name]}] has it too")
        first_index[raw_name] = i
        segment = _segment(node, levels)
        if known_events is not None:
            _check_known_events(node, known_events)
        if history is not None:
            _check_history(node, segment, history)
        parsed.append(segment)
    return tuple(parsed)


def load_segments(
    path: Path | Location,
    levels: Mapping[str, float],
    known_events: Collection[str] | None = None,
    history: tuple[datetime, datetime] | None = None,
) -> tuple[SegmentDefinition, ...]:
    """Read and validate a segments file.

    `known_events` (the distinct event names of the events table) turns unknown names into errors;
    `history` (first and last event time) rejects windows longer than the data.
    """
    try:
        location = Location.parse(path)
        data = read_yaml(location)
    except (ConfigError, LocationError) as exc:
        raise SegmentConfigError(str(exc)) from exc
    return parse_segments(data, location.name, levels, known_events, history)


__all__ = ["ACCEPTED_KEYS", "SegmentConfigError", "load_segments", "parse_segments"]
