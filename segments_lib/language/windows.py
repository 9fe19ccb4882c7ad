"""Which events a night reads: the time windows its stages look at, from the segment and the run date alone.

Pure date arithmetic, no Spark. A stage given the events of its window builds exactly what it would
build from the whole history, because every reader of the events looks back a bounded time:

* features and eligibility at snapshot T read [T − history, T) (`SegmentDefinition.history`: the
  `feature_history` look-back, at least P1; `eligible.lookback` when it is longer; `active_in` ≤ it);
* labels at T read [T, T + H) (H: the label horizon, P3 plus a sequence's follow-up);
* the ledger of night D judges the membership of S = D − ⌈H⌉ days with labels over [S, S + H) ⊆ [S, D).

So a training night reads [oldest training snapshot − history, D): the calibration labels close at D;
a scoring-only night reads [D − history, D); the backtest adds [S, D), inside the scoring window
whenever H ≤ history. Every window ends at D 00:00 UTC: nothing a night computes looks at D or later.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from segments_lib.language.definitions import SegmentDefinition
from segments_lib.language.snapshots import midnight_utc, snapshot_calendar

_DAY = timedelta(days=1)


@dataclass(frozen=True)
class ReadWindow:
    """Events with start ≤ event_time < end (UTC, aware)."""
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start > self.end:
            raise ValueError(f"window starts {self.start} after it ends {self.end}")

    @property
    def first_day(self) -> date:
        """The first `event_date` partition holding events of the window."""
        return self.start.date()

    @property
    def last_day(self) -> date:
        """The last `event_date` partition holding events of the window (end is exclusive)."""
        return (self.end - timedelta(microseconds=1)).date()

    def union(self, other: ReadWindow) -> ReadWindow:
        """The smallest window covering both (windows of one night overlap or touch: all end at a D)."""
        return ReadWindow(min(self.start, other.start), max(self.end, other.end))


def look_back(segment: SegmentDefinition) -> timedelta:
    """How far before a snapshot the features and eligibility of `segment` read."""
    eligible = segment.eligible
    candidates = [segment.history, segment.past_window]
    if eligible.active_in is not None:
        candidates.append(eligible.active_in)
    if eligible.lookback is not None and (eligible.has_done or eligible.not_done):
        candidates.append(eligible.lookback)
    return max(candidates)


def scoring_window(segment: SegmentDefinition, run_date: date) -> ReadWindow:
    """Features at T = D: [D − look-back, D)."""
    scoring = midnight_utc(run_date)
    return ReadWindow(scoring - look_back(segment), scoring)


def training_window(segment: SegmentDefinition, run_date: date) -> ReadWindow:
    """Features at every training and calibration snapshot and their labels: [oldest − look-back, D)."""
    training = segment.training
    calendar = snapshot_calendar(run_date, segment.horizon, training.snapshots, training.stride)
    return ReadWindow(calendar.oldest - look_back(segment), calendar.scoring)


def backtest_window(segment: SegmentDefinition, run_date: date) -> ReadWindow:
    """Labels of the night S = D − ⌈H⌉ days whose prediction window has closed by D: [S, D)."""
    scored = midnight_utc(run_date) - timedelta(days=math.ceil(segment.horizon / _DAY))
    return ReadWindow(scored, midnight_utc(run_date))


def night_window(segment: SegmentDefinition, run_date: date, training: bool) -> ReadWindow:
    """Everything one segment's night reads: scoring and backtest, plus training when it trains."""
    window = scoring_window(segment, run_date).union(backtest_window(segment, run_date))
    return window.union(training_window(segment, run_date)) if training else window


def job_window(segments: Iterable[SegmentDefinition], dates: Sequence[date], training: bool) -> ReadWindow:
    """The union of every segment's night over every night in `dates`: what a job invocation reads."""
    windows = [night_window(s, d, training) for s in segments for d in dates]
    if not windows:
        raise ValueError("job_window needs at least one segment and one run date")
    found = windows[0]
    for window in windows[1:]:
        found = found.union(window)
    return found


def refresh_from(newest_day: date | None, late_days: int) -> date | None:
    """The first day a night re-validates: the table's newest day (it may have been partial) and the
    `late_days` before it; None on an empty table (import everything the source has)."""
    if late_days < 0:
        raise ValueError(f"late_days must be 0 or more, found {late_days}")
    return None if newest_day is None else newest_day - timedelta(days=late_days)


def day_chunks(first_day: date, end_day: date, days_per_chunk: int) -> list[tuple[date, date]]:
    """[first_day, end_day) cut into half-open runs of at most `days_per_chunk` days, oldest first."""
    if days_per_chunk < 1:
        raise ValueError(f"days_per_chunk must be at least 1, found {days_per_chunk}")
    chunks = []
    start = first_day
    while start < end_day:
        stop = min(start + timedelta(days=days_per_chunk), end_day)
        chunks.append((start, stop))
        start = stop
    return chunks
