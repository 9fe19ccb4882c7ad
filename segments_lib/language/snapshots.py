"""The snapshot calendar: which snapshot times a run for date D trains on, calibrates on and scores.

For run date D (snapshot T = D 00:00 UTC) and label horizon H (P3, or P3 + the follow-up window of a
sequence target):

* scoring      T = D
* calibration  T = D − H: the newest snapshot whose label window [T, T + H) has closed; held out
* training     T = D − 2·H − k·S for k = 0..K−1, listed newest first (k = 0 first)

The calibration snapshot is also the newest training snapshot, for half of its users
(`model.training.is_training_row`, a seeded hash of user_id): the model that scores night D learns
from labels up to D. The other half is the holdout, and for those users every training label window
(the older snapshots') ends at D − H, exactly where their holdout label window starts, so no training
label sees an event the holdout is judged on. Training labels may overlap the calibration snapshot's
past window; that is past behaviour at calibration time, not leakage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone


@dataclass(frozen=True)
class SnapshotCalendar:
    run_date: date
    scoring: datetime
    calibration: datetime
    training: tuple[datetime, ...]  # the older training snapshots (every user), newest first

    @property
    def validation(self) -> datetime:
        """The newest snapshot that trains for every user (the training half of `calibration` is newer)."""
        return self.training[0]

    @property
    def oldest(self) -> datetime:
        return self.training[-1]

    @property
    def labelled(self) -> tuple[datetime, ...]:
        """Every snapshot that needs features and labels (training and calibration), oldest first."""
        return (*reversed(self.training), self.calibration)


def midnight_utc(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime; naive ones (as Spark's collect returns them) are in the driver's local zone."""
    return moment.astimezone(timezone.utc)


def snapshot_calendar(run_date: date, horizon: timedelta, n_training: int, stride: timedelta) -> SnapshotCalendar:
    """The calendar for one run; raises ValueError naming the argument when it cannot be built."""
    if n_training < 1:
        raise ValueError(f"n_training must be at least 1, found {n_training}")
    if horizon <= timedelta(0):
        raise ValueError(f"horizon must be positive, found {horizon}")
    if stride <= timedelta(0):
        raise ValueError(f"stride must be positive, found {stride}")
    scoring = midnight_utc(run_date)
    calibration = scoring - horizon
    newest_training = scoring - 2 * horizon
    training = tuple(newest_training - k * stride for k in range(n_training))
    return SnapshotCalendar(run_date=run_date, scoring=scoring, calibration=calibration, training=training)


def earliest_history_needed(calendar: SnapshotCalendar, past_window: timedelta) -> datetime:
    """The oldest event time any training feature window reads (features at T use [T − P1, T))."""
    return calendar.oldest - past_window
