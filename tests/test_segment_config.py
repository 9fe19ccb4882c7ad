"""The segment language: the shipped file parses, and every invalid input gets a message naming file,
segment, key path and what would be valid."""

from __future__ import annotations

import copy
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from segments_lib.config import PROJECT_ROOT, load_config
from segments_lib.language.definitions import (
    Absent,
    AllOf,
    AnyOf,
    DurationPair,
    Occurs,
    Sequence,
    Treatment,
    ValueSum,
    uplift_shares,
)
from segments_lib.language.segment_config import ACCEPTED_KEYS, SegmentConfigError, load_segments, parse_segments

LEVELS = {"high": 0.8, "medium": 0.6, "low": 0.4}
DEMO_EVENTS = ("Open App", "Screen Viewed", "Content Viewed", "Browse Content", "Feature Used",
               "Click Notification", "Message Read", "Add to Cart", "Purchase Completed")
SHIPPED = PROJECT_ROOT / "conf" / "segments.yaml"


def shipped() -> dict[str, Any]:
    return yaml.safe_load(SHIPPED.read_text())


def parse(data: dict[str, Any], **kwargs: Any):
    return parse_segments(data, "segments.yaml", LEVELS, **kwargs)


def with_change(index: int, path: str, value: Any) -> dict[str, Any]:
    """The shipped file with one key of one segment replaced (or deleted when value is ...)."""
    data = copy.deepcopy(shipped())
    node = data["segments"][index]
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return data


def fails(data: dict[str, Any], message: str, **kwargs: Any) -> None:
    with pytest.raises(SegmentConfigError) as caught:
        parse(data, **kwargs)
    assert str(caught.value) == message


def test_shipped_file_defines_the_five_demo_segments() -> None:
    cfg = load_config()
    segments = load_segments(cfg.segments_file, cfg.precision_levels, known_events=DEMO_EVENTS)
    by_name = {s.name: s for s in segments}
    assert list(by_name) == ["likely_to_purchase", "churn_risk", "cart_abandonment", "high_value",
                             "engagement_booster"]
    assert by_name["likely_to_purchase"].target == Occurs(("Purchase Completed",))
    assert by_name["churn_risk"].target == Absent(DEMO_EVENTS)
    assert by_name["cart_abandonment"].target == Sequence("Add to Cart", "Purchase Completed", timedelta(hours=24))
    assert by_name["cart_abandonment"].horizon == timedelta(days=8)
    assert by_name["high_value"].target == ValueSum(("Purchase Completed",), at_least=150.0)
    assert by_name["engagement_booster"].target == Occurs(("Click Notification",))
    purchase = by_name["likely_to_purchase"]
    assert (purchase.kind, purchase.past_window, purchase.prediction_window) == ("conversion", timedelta(days=28),
                                                                                 timedelta(days=7))
    # A number, not a named level: on the demo no threshold reaches the named levels' 0.40 floor.
    assert purchase.precision_level == 0.3 and purchase.promised_precision(LEVELS) == 0.3
    assert purchase.duration_pairs == (DurationPair("Add to Cart", "Purchase Completed", timedelta(hours=24)),)
    assert purchase.eligible.active_in == timedelta(days=28)
    assert (purchase.training.snapshots, purchase.training.min_positives) == (4, 200)


def test_full_language_with_composition_and_defaults() -> None:
    data = {"segments": [{
        "name": "custom_mix",
        "target": {"any_of": [
            {"all_of": [{"occurs": {"events": "Add to Cart", "min_count": 2, "value_at_least": 5,
                                    "value_at_most": 50}},
                        {"absent": {"events": ["Purchase Completed"]}}]},
            {"value_sum": {"events": ["Purchase Completed"], "top_fraction": 0.1}},
        ]},
        "past_window": "4w", "prediction_window": "12h", "precision_level": 0.7,
        "feature_windows": ["1d", "7d"], "top_events": 5,
        "duration_pairs": [["Open App", "Add to Cart"]],
        "eligible": {"has_done": ["Open App"], "not_done": "Purchase Completed", "lookback": "14d"},
        "training": {"snapshots": 6, "stride": "3d", "gbt": {"max_depth": 3}, "search": [{"step_size": 0.05}],
                     "retrain_every": "1d", "min_positives": 10, "min_negatives": 20, "seed": 1},
    }]}
    (segment,) = parse(data)
    assert segment.kind == "custom" and segment.precision_level == 0.7 and segment.level_name() == "p70"
    assert segment.target == AnyOf((
        AllOf((Occurs(("Add to Cart",), 2, 5.0, 50.0), Absent(("Purchase Completed",)))),
        ValueSum(("Purchase Completed",), top_fraction=0.1),
    ))
    assert segment.past_window == timedelta(days=28) and segment.prediction_window == timedelta(hours=12)
    assert segment.windows == (timedelta(days=1), timedelta(days=7), timedelta(days=28))
    assert segment.duration_pairs == (DurationPair("Open App", "Add to Cart", timedelta(hours=24)),)
    assert segment.eligible.not_done == ("Purchase Completed",) and segment.eligible.lookback == timedelta(days=14)
    assert segment.training.gbt.max_depth == 3 and segment.training.gbt.max_iter == 60
    assert segment.training.search[0].step_size == 0.05 and segment.training.search[0].max_depth == 3
    assert (segment.training.snapshots, segment.training.stride, segment.training.min_negatives) == (
        6, timedelta(days=3), 20)


def test_bad_duration_names_file_segment_and_key() -> None:
    fails(with_change(2, "target.sequence.within", "24x"),
          "segments.yaml: segments[2] 'cart_abandonment': target.sequence.within: '24x' is not a duration "
          "(use e.g. 24h, 7d)")


@pytest.mark.parametrize("value", ["0d", "-7d"])
def test_non_positive_windows_are_rejected(value: str) -> None:
    fails(with_change(0, "prediction_window", value),
          f"segments.yaml: segments[0] 'likely_to_purchase': prediction_window: '{value}' must be a positive "
          "duration (use e.g. 24h, 7d)")


def test_duration_without_unit_is_rejected() -> None:
    fails(with_change(1, "past_window", 28),
          "segments.yaml: segments[1] 'churn_risk': past_window: 28 is not a duration (write it with a unit, "
          "e.g. 24h, 7d, 4w)")


def test_unknown_segment_key_suggests_the_right_one() -> None:
    data = with_change(0, "prediction_windw", "7d")
    with pytest.raises(SegmentConfigError, match=re.escape(
        "segments.yaml: segments[0] 'likely_to_purchase': prediction_windw: unknown key "
        "(did you mean 'prediction_window'?); valid keys: name, kind,")):
        parse(data)


def test_unknown_key_inside_a_target_term_suggests() -> None:
    data = with_change(2, "target.sequence", {"first": "Add to Cart", "then": "Purchase Completed", "withn": "24h"})
    fails(data, "segments.yaml: segments[2] 'cart_abandonment': target.sequence.withn: unknown key "
                "(did you mean 'within'?); valid keys: first, then, within")


def test_unknown_target_term_suggests() -> None:
    data = with_change(0, "target", {"occur": {"events": ["Purchase Completed"]}})
    fails(data, "segments.yaml: segments[0] 'likely_to_purchase': target.occur: unknown key (did you mean "
                "'occurs'?); valid keys: occurs, absent, value_sum, sequence, all_of, any_of")


def test_unknown_top_level_key() -> None:
    fails({"segment": []}, "segments.yaml: segment: unknown key (did you mean 'segments'?); valid keys: segments")


def test_target_needs_exactly_one_term() -> None:
    data = with_change(0, "target", {"occurs": {"events": ["Open App"]}, "absent": {"events": ["Open App"]}})
    fails(data, "segments.yaml: segments[0] 'likely_to_purchase': target: must have exactly one of occurs, absent, "
                "value_sum, sequence, all_of, any_of (found occurs, absent); combine several terms with "
                "all_of / any_of")


def test_empty_composition_is_rejected() -> None:
    fails(with_change(0, "target", {"all_of": []}),
          "segments.yaml: segments[0] 'likely_to_purchase': target.all_of: must be a non-empty list of targets, "
          "found list []")


def test_error_inside_a_composition_names_the_nested_path() -> None:
    data = with_change(0, "target", {"any_of": [{"occurs": {"events": ["Open App"]}},
                                                {"occurs": {"events": ["Open App"], "min_count": 0}}]})
    fails(data, "segments.yaml: segments[0] 'likely_to_purchase': target.any_of[1].occurs.min_count: must be a "
                "whole number ≥ 1, found int 0")


def test_missing_required_key() -> None:
    fails(with_change(3, "prediction_window", ...),
          "segments.yaml: segments[3] 'high_value': prediction_window: is required")


def test_value_sum_needs_exactly_one_threshold() -> None:
    fails(with_change(3, "target.value_sum", {"events": ["Purchase Completed"], "at_least": 1, "top_fraction": 0.1}),
          "segments.yaml: segments[3] 'high_value': target.value_sum: needs exactly one of at_least (a sum, "
          "e.g. 150) or top_fraction (e.g. 0.1 for the top decile)")
    fails(with_change(3, "target.value_sum", {"events": ["Purchase Completed"], "top_fraction": 1.5}),
          "segments.yaml: segments[3] 'high_value': target.value_sum.top_fraction: must be a number in (0, 1), "
          "found 1.5")


def test_occurs_value_range_must_be_possible() -> None:
    fails(with_change(0, "target.occurs", {"events": ["Purchase Completed"], "value_at_least": 10,
                                           "value_at_most": 5}),
          "segments.yaml: segments[0] 'likely_to_purchase': target.occurs.value_at_most: 5.0 is below "
          "value_at_least 10.0; no value could match")


@pytest.mark.parametrize(("level", "message"), [
    ("hihg", "unknown level 'hihg' (did you mean 'high'?); use one of high, medium, low or a number in (0, 1)"),
    (1.5, "must be one of high, medium, low or a number in (0, 1), found 1.5"),
    (0, "must be one of high, medium, low or a number in (0, 1), found 0"),
])
def test_precision_level_names_or_fraction(level: Any, message: str) -> None:
    fails(with_change(0, "precision_level", level),
          f"segments.yaml: segments[0] 'likely_to_purchase': precision_level: {message}")


def test_kind_must_be_known() -> None:
    fails(with_change(1, "kind", "churning"),
          "segments.yaml: segments[1] 'churn_risk': kind: 'churning' is not a kind (did you mean 'churn'?); use one "
          "of conversion, churn, abandonment, high_value, engagement, uplift, custom")


def test_an_uplift_segment_names_its_treatment() -> None:
    data = with_change(4, "kind", "uplift")
    data["segments"][4]["target"] = {"occurs": {"events": ["Purchase Completed"]}}
    data["segments"][4]["treatment"] = {"events": "Campaign Sent"}
    (booster,) = [s for s in parse(data, known_events=(*DEMO_EVENTS, "Campaign Sent")) if s.kind == "uplift"]
    assert booster.treatment == Treatment(("Campaign Sent",), timedelta(days=1))  # the window defaults to 1d
    data["segments"][4]["treatment"] = {"events": ["Campaign Sent", "Push Sent"], "window": "2d"}
    (booster,) = [s for s in parse(data) if s.kind == "uplift"]
    assert booster.treatment == Treatment(("Campaign Sent", "Push Sent"), timedelta(days=2))


def test_the_treatment_is_required_for_uplift_checked_against_the_data_and_refused_elsewhere() -> None:
    where = "segments.yaml: segments[4] 'engagement_booster'"
    fails(with_change(4, "kind", "uplift"),
          f"{where}: treatment: is required for kind: uplift, e.g. {{events: [Campaign Sent], window: 1d}}")
    fails(with_change(4, "treatment", {"events": ["Campaign Sent"]}),
          f"{where}: treatment: only an uplift segment has a treatment; this segment's kind is 'engagement'")
    data = with_change(4, "kind", "uplift")
    data["segments"][4]["treatment"] = {"events": ["Campaign Sent"], "window": "8d"}
    fails(data, f"{where}: treatment.window: 8d is longer than prediction_window 7d: the exposure must open the "
                "window its outcome is judged in")
    data["segments"][4]["treatment"] = {"events": ["Campain Sent"]}
    fails(data, f"{where}: treatment.events: event 'Campain Sent' never occurs in the events table; closest "
                "existing names: 'Campaign Sent'", known_events=(*DEMO_EVENTS, "Campaign Sent"))
    data["segments"][4]["treatment"] = {"event": ["Campaign Sent"]}
    with pytest.raises(SegmentConfigError, match=re.escape(f"{where}: treatment.event: ")):
        parse(data)


def test_an_uplift_segments_level_is_a_share_of_users_targeted() -> None:
    where = "segments.yaml: segments[4] 'engagement_booster'"
    data = with_change(4, "kind", "uplift")
    data["segments"][4]["treatment"] = {"events": ["Campaign Sent"]}
    data["segments"][4]["precision_level"] = 0.2
    (booster,) = [s for s in parse(data) if s.kind == "uplift"]
    assert (booster.precision_level, booster.level_name()) == (0.2, "top20")
    assert uplift_shares(booster) == {"high": 0.1, "medium": 0.3, "low": 0.5, "top20": 0.2}
    del data["segments"][4]["precision_level"]
    (booster,) = [s for s in parse(data) if s.kind == "uplift"]
    assert booster.precision_level == "medium" and uplift_shares(booster)["medium"] == 0.3
    data["segments"][4]["precision_level"] = "hihg"
    fails(data, f"{where}: precision_level: unknown level 'hihg' for an uplift segment (did you mean 'high'?); use "
                "high (top 10%), medium (top 30%), low (top 50%), or the share of users to target as a number in "
                "(0, 1)")
    data["segments"][4]["precision_level"] = 1.5
    fails(data, f"{where}: precision_level: an uplift segment's level is high (top 10%), medium (top 30%), low "
                "(top 50%), or a share in (0, 1); found 1.5")


def test_the_shipped_uplift_example_parses() -> None:
    data = yaml.safe_load((PROJECT_ROOT / "conf" / "segments_uplift.yaml").read_text())
    (segment,) = parse_segments(data, "segments_uplift.yaml", LEVELS, known_events=(*DEMO_EVENTS, "Campaign Sent"))
    assert (segment.kind, segment.treatment.events, segment.level_name()) == ("uplift", ("Campaign Sent",), "medium")


def test_duplicate_names_are_rejected() -> None:
    fails(with_change(4, "name", "churn_risk"),
          "segments.yaml: segments[4] 'churn_risk': name: duplicate segment name; segments[1] has it too")


@pytest.mark.parametrize("name", ["Churn Risk", "../x", "risk-2"])
def test_segment_names_must_be_safe_identifiers(name: str) -> None:
    fails(with_change(0, "name", name),
          f"segments.yaml: segments[0] '{name}': name: {name!r} is not a valid segment name: use lowercase "
          "letters, digits and _ (it becomes a table partition value and an MLflow model name)")


def test_unknown_event_lists_the_closest_existing_names() -> None:
    fails(with_change(0, "target.occurs", {"events": ["Purchase Complete"]}),
          "segments.yaml: segments[0] 'likely_to_purchase': target.occurs.events: event 'Purchase Complete' never "
          "occurs in the events table; closest existing names: 'Purchase Completed'",
          known_events=DEMO_EVENTS)


def test_unknown_event_in_a_duration_pair_is_found_too() -> None:
    data = with_change(0, "duration_pairs", [["Add To Cart", "Purchase Completed"]])
    with pytest.raises(SegmentConfigError, match=re.escape(
            "segments[0] 'likely_to_purchase': duration_pairs[0]: event 'Add To Cart' never occurs in the events "
            "table; closest existing names: 'Add to Cart'")):
        parse(data, known_events=DEMO_EVENTS)


def test_windows_longer_than_the_history_are_rejected() -> None:
    history = (datetime(2026, 5, 1), datetime(2026, 5, 21))
    fails(shipped(), "segments.yaml: segments[0] 'likely_to_purchase': past_window: 28d is longer than the events' "
                     "whole history (20d: 2026-05-01 00:00 to 2026-05-21 00:00 UTC)", history=history)


def test_sequence_follow_up_counts_towards_the_history_check() -> None:
    data = with_change(2, "past_window", "1d")
    data["segments"] = data["segments"][2:3]
    data["segments"][0]["eligible"] = {"active_in": "1d"}
    fails(data, "segments.yaml: segments[0] 'cart_abandonment': prediction_window: 8d is longer than the events' "
                "whole history (7d: 2026-05-01 00:00 to 2026-05-08 00:00 UTC) once the sequence's follow-up time "
                "is added", history=(datetime(2026, 5, 1), datetime(2026, 5, 8)))


def test_feature_window_longer_than_past_window() -> None:
    fails(with_change(0, "feature_windows", ["1d", "60d"]),
          "segments.yaml: segments[0] 'likely_to_purchase': feature_windows[1]: 60d is longer than past_window 28d")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(SegmentConfigError, match=r"nope\.yaml: config file not found"):
        load_segments(tmp_path / "nope.yaml", LEVELS)


def test_reference_doc_mentions_every_accepted_key() -> None:
    doc = (PROJECT_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = sorted({key for keys in ACCEPTED_KEYS.values() for key in keys if f"`{key}`" not in doc})
    assert missing == []


def test_unknown_event_without_a_close_match_lists_some_existing_names() -> None:
    fails(with_change(1, "eligible", {"not_done": ["Zzz"]}),
          "segments.yaml: segments[1] 'churn_risk': eligible.not_done: event 'Zzz' never occurs in the events table; "
          "closest existing names: 'Add to Cart', 'Browse Content', 'Click Notification', 'Content Viewed', "
          "'Feature Used'", known_events=DEMO_EVENTS)


def test_segment_entries_must_be_mappings_with_a_name() -> None:
    fails({"segments": ["likely_to_purchase"]},
          "segments.yaml: segments[0]: must be a mapping with at least name, target, past_window and "
          "prediction_window, found str 'likely_to_purchase'")
    fails({"segments": [{"target": {"occurs": {"events": "Open App"}}}]},
          "segments.yaml: segments[0]: name: None is not a valid segment name: use lowercase letters, digits and _ "
          "(it becomes a table partition value and an MLflow model name)")


@pytest.mark.parametrize(("value", "parsed"), [("sqrt", "sqrt"), ("onethird", "onethird"), (0.5, "0.5"), (1, "1.0")])
def test_gbt_feature_subset_names_or_fraction(value: Any, parsed: str) -> None:
    (segment, *_) = parse(with_change(0, "training.gbt.feature_subset", value))
    assert segment.training.gbt.feature_subset == parsed
    # a search candidate inherits it unless it sets its own
    assert all(candidate.feature_subset == parsed for candidate in segment.training.search)


def test_gbt_feature_subset_rejects_anything_else() -> None:
    fails(with_change(0, "training.gbt.feature_subset", "half"),
          "segments.yaml: segments[0] 'likely_to_purchase': training.gbt.feature_subset: must be one of all, "
          "onethird, sqrt, log2 or a fraction in (0, 1], found str 'half'")


def test_training_trainer_is_gbt_unless_set_and_only_a_known_one() -> None:
    (segment, *_) = parse(shipped())
    assert segment.training.trainer == "gbt"
    (segment, *_) = parse(with_change(0, "training.trainer", "xgboost"))
    assert segment.training.trainer == "xgboost"
    fails(with_change(0, "training.trainer", "lightgbm"),
          "segments.yaml: segments[0] 'likely_to_purchase': training.trainer: must be one of gbt, xgboost, "
          "found str 'lightgbm'")
