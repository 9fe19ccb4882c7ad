"""Snapshot calendar: dates computed by hand for several horizons and strides."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from segments_lib.language.snapshots import earliest_history_needed, snapshot_calendar


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def test_seven_day_horizon_weekly_stride() -> None:
    cal = snapshot_calendar(date(2026, 6, 1), timedelta(days=7), n_training=4, stride=timedelta(days=7))
    assert cal.scoring == utc(2026, 6, 1)
    assert cal.calibration == utc(2026, 5, 25)
    # D − 14d = May 18, then weekly back
    assert cal.training == (utc(2026, 5, 18), utc(2026, 5, 11), utc(2026, 5, 4), utc(2026, 4, 27))
    assert cal.validation == utc(2026, 5, 18)
    assert cal.labelled == (utc(2026, 4, 27), utc(2026, 5, 4), utc(2026, 5, 11), utc(2026, 5, 18), utc(2026, 5, 25))


def test_fourteen_day_horizon_three_day_stride_crosses_month_and_year() -> None:
    cal = snapshot_calendar(date(2026, 1, 10), timedelta(days=14), n_training=3, stride=timedelta(days=3))
    assert cal.calibration == utc(2025, 12, 27)
    # D − 28d = Dec 13 2025, then Dec 10, Dec 7
    assert cal.training == (utc(2025, 12, 13), utc(2025, 12, 10), utc(2025, 12, 7))


def test_sequence_horizon_with_hours_stays_on_exact_times() -> None:
    # abandonment: P3 = 7d plus H = 24h → horizon 8d
    cal = snapshot_calendar(date(2026, 3, 1), timedelta(days=8), n_training=2, stride=timedelta(days=1))
    assert cal.calibration == utc(2026, 2, 21)
    assert cal.training == (utc(2026, 2, 13), utc(2026, 2, 12))
    odd = snapshot_calendar(date(2026, 3, 1), timedelta(days=1, hours=12), n_training=1, stride=timedelta(days=7))
    assert odd.calibration == utc(2026, 2, 27, 12)
    assert odd.training == (utc(2026, 2, 26),)


def test_no_training_label_window_overlaps_the_calibration_label_window() -> None:
    horizon = timedelta(days=7)
    cal = snapshot_calendar(date(2026, 6, 1), horizon, n_training=4, stride=timedelta(days=2))
    newest_training_label_end = cal.training[0] + horizon
    assert newest_training_label_end == cal.calibration == utc(2026, 5, 25)


def test_earliest_history_is_oldest_training_snapshot_minus_past_window() -> None:
    cal = snapshot_calendar(date(2026, 6, 1), timedelta(days=7), n_training=4, stride=timedelta(days=7))
    # oldest training Apr 27 − 28d = Mar 30
    assert earliest_history_needed(cal, timedelta(days=28)) == utc(2026, 3, 30)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_training": 0}, "n_training"),
    ({"horizon": timedelta(0)}, "horizon"),
    ({"stride": timedelta(days=-1)}, "stride"),
])
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    args = {"run_date": date(2026, 6, 1), "horizon": timedelta(days=7), "n_training": 2, "stride": timedelta(days=7)}
    with pytest.raises(ValueError, match=message):
        snapshot_calendar(**{**args, **kwargs})
