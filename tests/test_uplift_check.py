"""The dry run of an uplift segment on hand-built events: arms, minimums and pre-treatment balance.

Run date D = 2026-03-01, P3 = 1 day: the newest complete snapshot is T = 2026-02-28, the treatment
window [T, T + 1d). P1 = 2 days, so the past window is [02-26, 02-28).
"""

from __future__ import annotations

import textwrap
from datetime import date, datetime

import pytest
import yaml

from segments_lib.language.dry_run import check_segment, events_history, format_report
from segments_lib.language.segment_config import parse_segments

D = date(2026, 3, 1)
OPEN, BUY, SENT = "Open App", "Purchase Completed", "Campaign Sent"
T = datetime(2026, 2, 28)
BALANCED = [
    ("old", OPEN, datetime(2026, 2, 20)),  # the history reaches back far enough; not active at T, so not eligible
    ("ghost", SENT, datetime(2026, 2, 27)), ("ghost", SENT, T),  # only ever sent to: no activity, not eligible
    ("t1", OPEN, datetime(2026, 2, 27, 12)), ("t1", SENT, T), ("t1", BUY, datetime(2026, 2, 28, 10)),  # treated, +
    ("t2", OPEN, datetime(2026, 2, 27, 9)), ("t2", SENT, T),                                           # treated, -
    ("c1", OPEN, datetime(2026, 2, 27, 12)), ("c1", BUY, datetime(2026, 2, 28, 11)),                   # control, +
    ("c2", OPEN, datetime(2026, 2, 27, 9)),                                                            # control, -
]
# t1 opened the app twice more: 3, 1 events for the treated (mean 2, sample variance 2), 1, 1 for the
# control (mean 1, variance 0): SMD = (2 − 1) / sqrt((2 + 0) / 2) = +1.00.
ACTIVE_ONES_SENT = [*BALANCED, ("t1", OPEN, datetime(2026, 2, 27, 12)), ("t1", OPEN, datetime(2026, 2, 27, 12))]


def uplift_segment(treatment_event: str = SENT):
    text = textwrap.dedent(f"""
        segments:
          - name: responders
            kind: uplift
            target: {{occurs: {{events: [{BUY}]}}}}
            treatment: {{events: [{treatment_event}]}}
            past_window: 2d
            prediction_window: 1d
            eligible: {{active_in: 2d}}
            training: {{snapshots: 1, stride: 1d, min_positives: 1, min_negatives: 1}}
    """)
    (segment,) = parse_segments(yaml.safe_load(text), "segments.yaml", {"high": 0.8, "medium": 0.6, "low": 0.4})
    return segment


def frame(spark, rows):
    return spark.createDataFrame([(u, e, t, None, t.date()) for u, e, t in rows],
                                 "user_id string, event_name string, event_time timestamp, event_value double, "
                                 "event_date date")


def test_a_randomized_exposure_with_both_arms_passes_and_is_reported(spark) -> None:
    events = frame(spark, BALANCED)
    result = check_segment(events, uplift_segment(), D, events_history(events))
    arms = result.uplift
    assert result.eligible == 4  # t1, t2, c1, c2: a send is not activity, so "ghost" is not eligible
    assert (arms.treated.users, arms.treated.positives, arms.control.users, arms.control.positives) == (2, 1, 2, 1)
    assert arms.treated_share == 0.5
    # Both arms: one event each in the past window, one active day, last event 12 h / 15 h before T,
    # first event the same: no difference at all.
    assert arms.smd == {"events_in_past_window": 0.0, "active_days_in_past_window": 0.0,
                        "days_since_last_event": 0.0, "tenure_days": 0.0}
    assert result.problems == () and result.ok
    assert ("  responders: treated 2 (1 positives), control 2 (1 positives), treated share 50.0%; largest "
            "imbalance events_in_past_window +0.000 SD") in format_report([result])


def test_an_exposure_that_favours_active_users_does_not_look_randomized(spark) -> None:
    events = frame(spark, ACTIVE_ONES_SENT)
    result = check_segment(events, uplift_segment(), D, events_history(events))
    assert result.uplift.smd["events_in_past_window"] == pytest.approx(1.0)
    assert result.problems == (
        "the exposure at 2026-02-28 does not look randomized: events_in_past_window differs between treated and "
        "control by +1.00 standard deviations (limit ±0.1); an uplift model needs a random share of users "
        "exposed and the rest held back",)


def test_no_exposure_and_an_arm_below_the_minimums_are_problems(spark) -> None:
    events = frame(spark, [*BALANCED, ("p1", OPEN, datetime(2026, 2, 27, 8)), ("p1", "Push Sent", T)])
    no_push = check_segment(events, uplift_segment("Push Sent"), D, events_history(events))
    # Only p1 was pushed, and p1 did not buy: the treated arm has 0 positives.
    assert (no_push.uplift.treated.users, no_push.uplift.treated.positives) == (1, 0)
    assert no_push.problems[0] == ("the treated arm at 2026-02-28 has 0 positives and 1 negatives; each arm "
                                   "needs training.min_positives 1 and training.min_negatives 1")
    nobody = check_segment(frame(spark, BALANCED), uplift_segment("Push Sent"), D)
    assert nobody.problems == ("no eligible user has 'Push Sent' in the first 1d of the prediction window at "
                               "2026-02-28: an uplift segment learns from snapshots where a randomized exposure "
                               "happened",)
