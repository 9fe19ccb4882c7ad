"""Can a segment be built from these events? The check run before anything trains.

For run date D and label horizon H (P3, plus a sequence's follow-up time) it looks at the newest
complete snapshot T = D − H: how many users are eligible, how many of them hit the target in
[T, T + P3), whether that meets `training.min_positives` / `min_negatives`, and whether the events
reach back far enough for the oldest training snapshot's past window (T_oldest − P1).
`jobs/check_segments.py` prints the results; the nightly job can reuse `check_segment`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from segments_lib.language.definitions import SegmentDefinition, format_duration
from segments_lib.language.eligibility import eligible_population, snapshot_frame
from segments_lib.language.snapshots import as_utc, earliest_history_needed, snapshot_calendar
from segments_lib.language.targets import build_labels
from segments_lib.language.treatment import behaviour_events
from segments_lib.language.uplift_check import UpliftCheck, check_uplift, describe, uplift_problems


@dataclass(frozen=True)
class EventsHistory:
    """What the events table holds: its time span and how often each event name occurs."""
    first: datetime
    last: datetime
    event_counts: dict[str, int]

    @property
    def span(self) -> tuple[datetime, datetime]:
        return self.first, self.last


def events_history(events: DataFrame) -> EventsHistory:
    """One aggregation over the events; raises ValueError when there are none."""
    profile = events.groupBy("event_name").agg(
        F.count(F.lit(1)).alias("n"), F.min("event_time").alias("first"), F.max("event_time").alias("last")
    ).collect()
    if not profile:
        raise ValueError("the events table is empty")
    # collect() returns naive datetimes in the driver's local zone; snapshots.as_utc reads them as such.
    return EventsHistory(
        first=as_utc(min(r["first"] for r in profile)),
        last=as_utc(max(r["last"] for r in profile)),
        event_counts={r["event_name"]: int(r["n"]) for r in profile},
    )


@dataclass(frozen=True)
class CheckResult:
    segment: str
    run_date: date
    snapshot: datetime  # newest complete snapshot, T = D − horizon
    horizon: timedelta
    eligible: int
    positives: int
    min_positives: int
    min_negatives: int
    history_start: datetime
    history_end: datetime
    oldest_training_snapshot: datetime
    history_needed_from: datetime  # oldest training snapshot − P1
    problems: tuple[str, ...]
    uplift: UpliftCheck | None = None  # kind: uplift: the arms and their balance at `snapshot`

    @property
    def negatives(self) -> int:
        return self.eligible - self.positives

    @property
    def base_rate(self) -> float | None:
        return self.positives / self.eligible if self.eligible else None

    @property
    def minimums_met(self) -> bool:
        return self.positives >= self.min_positives and self.negatives >= self.min_negatives

    @property
    def history_ok(self) -> bool:
        return self.history_start <= self.history_needed_from

    @property
    def ok(self) -> bool:
        return not self.problems


def check_segment(
    events: DataFrame, segment: SegmentDefinition, run_date: date, history: EventsHistory | None = None
) -> CheckResult:
    """Count eligible users, positives and negatives at D − horizon and compare with what training needs.

    Pass `history` when checking several segments so the events are profiled once.
    """
    history = history or events_history(events)
    training = segment.training
    calendar = snapshot_calendar(run_date, segment.horizon, training.snapshots, training.stride)
    behaviour = behaviour_events(events, segment)
    population = eligible_population(behaviour, snapshot_frame(events.sparkSession, [calendar.calibration]),
                                     segment.eligible)
    labels = build_labels(events, population, segment.target, segment.prediction_window).persist()
    counts = labels.agg(F.count(F.lit(1)).alias("eligible"), F.sum("label").alias("positives")).first()
    eligible, positives = int(counts["eligible"]), int(counts["positives"] or 0)
    arms = check_uplift(events, population, labels, segment, calendar.calibration) if segment.treatment else None
    labels.unpersist()
    counted = CheckResult(
        segment=segment.name, run_date=run_date, snapshot=calendar.calibration, horizon=segment.horizon,
        eligible=eligible, positives=positives,
        min_positives=training.min_positives, min_negatives=training.min_negatives,
        history_start=history.first, history_end=history.last, oldest_training_snapshot=calendar.oldest,
        history_needed_from=earliest_history_needed(calendar, segment.past_window), problems=(), uplift=arms,
    )
    uplift = uplift_problems(arms, segment, calendar.calibration) if arms else []
    return replace(counted, problems=(*_count_problems(counted), *_history_problems(counted, segment), *uplift))


def _count_problems(result: CheckResult) -> list[str]:
    problems: list[str] = []
    snapshot = result.snapshot
    if result.eligible == 0:
        problems.append(f"no eligible users at {snapshot:%Y-%m-%d %H:%M}")
    if result.positives < result.min_positives:
        problems.append(f"{result.positives} positives at {snapshot:%Y-%m-%d}, fewer than training.min_positives "
                        f"{result.min_positives}")
    if result.negatives < result.min_negatives:
        problems.append(f"{result.negatives} negatives at {snapshot:%Y-%m-%d}, fewer than "
                        f"training.min_negatives {result.min_negatives}")
    return problems


def _history_problems(result: CheckResult, segment: SegmentDefinition) -> list[str]:
    problems: list[str] = []
    training = segment.training
    if not result.history_ok:
        problems.append(
            f"events start {result.history_start:%Y-%m-%d %H:%M}, but {training.snapshots} training snapshots "
            f"every {format_duration(training.stride)} need events from {result.history_needed_from:%Y-%m-%d %H:%M} "
            f"(oldest training snapshot {result.oldest_training_snapshot:%Y-%m-%d} − past_window "
            f"{format_duration(segment.past_window)}); lower training.snapshots or training.stride, or load more "
            "history"
        )
    label_end = result.snapshot + result.horizon
    if result.history_end < label_end - timedelta(days=1):
        problems.append(
            f"events end {result.history_end:%Y-%m-%d %H:%M}, more than a day before the newest label window closes "
            f"({label_end:%Y-%m-%d %H:%M}): labels would be incomplete; is the events table up to date?"
        )
    return problems


_COLUMNS = ("segment", "snapshot T", "eligible", "positives", "negatives", "base rate", "minimum (+/-)",
            "needs events from", "events from", "status")


def _row(result: CheckResult) -> tuple[str, ...]:
    base_rate = f"{result.base_rate:.1%}" if result.base_rate is not None else "-"
    minimum = f"{result.min_positives}/{result.min_negatives} " + ("met" if result.minimums_met else "NOT met")
    history = f"{result.history_start:%Y-%m-%d}" + ("" if result.history_ok else " (too short)")
    return (result.segment, f"{result.snapshot:%Y-%m-%d}", str(result.eligible), str(result.positives),
            str(result.negatives), base_rate, minimum, f"{result.history_needed_from:%Y-%m-%d}", history,
            "ok" if result.ok else "CANNOT BUILD")


def format_report(results: Sequence[CheckResult]) -> str:
    """A fixed-width table, then one line per problem naming its segment."""
    rows = [_COLUMNS, *(_row(r) for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    numeric = {2, 3, 4, 5}
    lines = [
        "  ".join(
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    problems = [f"  {r.segment}: {p}" for r in results for p in r.problems]
    uplift = [describe(r.uplift, r.segment) for r in results if r.uplift is not None]
    if uplift:
        lines += ["", "uplift segments (treated = a treatment event in the first window of P3 after T):", *uplift]
    if results:
        lines.append("")
        lines.append(f"run date {results[0].run_date}; snapshot T = run date − label horizon (the newest "
                     "complete prediction window)")
    if problems:
        lines.append("cannot build:")
        lines.extend(problems)
    return "\n".join(lines)
