"""What one segment's night produced: `SegmentResult`, the `segment_runs` schema and write, the summary.

Every segment-night ends with exactly one status (ok / skipped / precision_unreachable /
no_eligible_users / failed): one segment's failure never stops the others.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from segments_lib.config import AppConfig
from segments_lib.job.level_report import LevelSummary, format_levels
from segments_lib.language.definitions import NAMED_LEVELS, SegmentDefinition
from segments_lib.progress import StageTimer
from segments_lib.store import tables

log = logging.getLogger(__name__)

STATUS_OK = "ok"
STATUS_SKIPPED = "skipped"
STATUS_UNREACHABLE = "precision_unreachable"
STATUS_NO_ELIGIBLE = "no_eligible_users"
STATUS_FAILED = "failed"
RETRAIN_MODES = ("auto", "always", "never")

RUNS_SCHEMA = StructType([
    StructField("run_date", DateType()),
    StructField("segment", StringType()),
    StructField("status", StringType()),
    StructField("reason", StringType()),
    StructField("retrained", BooleanType()),
    StructField("retrain_reason", StringType()),
    StructField("eligible_count", LongType()),
    StructField("member_count", LongType()),
    *(StructField(f"members_{level}", LongType()) for level in NAMED_LEVELS),
    StructField("control_count", LongType()),
    StructField("precision_level", StringType()),
    StructField("threshold", DoubleType()),
    *(StructField(f"threshold_{level}", DoubleType()) for level in NAMED_LEVELS),
    StructField("model_name", StringType()),
    StructField("model_version", IntegerType()),
    StructField("mlflow_run_id", StringType()),
    StructField("holdout_auc_pr", DoubleType()),
    StructField("events_version", LongType()),
    StructField("score_psi", DoubleType()),
    StructField("top_drifting_features", StringType()),
    StructField("precision_flag", BooleanType()),
    StructField("membership_entered", LongType()),
    StructField("membership_exited", LongType()),
    StructField("membership_jaccard", DoubleType()),
    StructField("stage_seconds", MapType(StringType(), DoubleType())),
    StructField("total_seconds", DoubleType()),
    StructField("finished_at", TimestampType()),
    # registry, or champion_copy when the tracking store was down and the night scored from the copy
    # (appended last: existing tables gain it by schema merge)
    StructField("model_source", StringType()),
])


@dataclass(frozen=True)
class SegmentResult:
    """What one segment's night produced: the row of `segment_runs` and the summary line.

    Built once, from the stages' outputs (`job.stages.segment_result`) or for a night that stopped early.
    """
    segment: str
    run_date: date
    status: str = STATUS_OK
    reason: str = ""
    retrained: bool = False
    retrain_reason: str = ""
    eligible_count: int = 0
    member_count: int = 0
    members_by_level: dict[str, int] = field(default_factory=dict)
    control_count: int = 0
    precision_level: str = ""
    threshold: float | None = None
    thresholds: dict[str, float | None] = field(default_factory=dict)
    model_name: str | None = None
    model_version: int | None = None
    mlflow_run_id: str | None = None
    holdout_auc_pr: float | None = None
    events_version: int | None = None
    score_psi: float | None = None
    top_drifting_features: str | None = None
    precision_flag: bool | None = None
    membership_entered: int | None = None
    membership_exited: int | None = None
    membership_jaccard: float | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    model_source: str | None = None  # registry | champion_copy; None when nothing scored
    # For the summary only (not columns of segment_runs): every level tonight, the held-out base rate,
    # and for an unreachable level what could be promised instead (job.level_report).
    levels: tuple[LevelSummary, ...] = ()
    base_rate: float | None = None
    reachable_hint: str = ""
    level_lines: tuple[str, ...] = ()  # an uplift segment's level lines (level_report.format_uplift_levels)

    def as_row(self) -> tuple:
        return (
            self.run_date, self.segment, self.status, self.reason, self.retrained, self.retrain_reason,
            self.eligible_count, self.member_count, *(self.members_by_level.get(lv) for lv in NAMED_LEVELS),
            self.control_count, self.precision_level, self.threshold,
            *(self.thresholds.get(lv) for lv in NAMED_LEVELS), self.model_name, self.model_version, self.mlflow_run_id,
            self.holdout_auc_pr, self.events_version, self.score_psi, self.top_drifting_features,
            self.precision_flag, self.membership_entered, self.membership_exited, self.membership_jaccard,
            {k: float(v) for k, v in self.stage_seconds.items()}, float(sum(self.stage_seconds.values())),
            datetime.now(timezone.utc).replace(tzinfo=None), self.model_source,
        )


def snapshot_time(run_date: date) -> datetime:
    """The scoring snapshot of a run date: midnight UTC starting that date (naive UTC for Spark)."""
    return datetime(run_date.year, run_date.month, run_date.day)


def write_runs(spark: SparkSession, cfg: AppConfig, results: Sequence[SegmentResult]) -> None:
    """Each segment's row replaces its own (segment, run_date) slice, so reruns never duplicate."""
    for result in results:
        frame = spark.createDataFrame([result.as_row()], RUNS_SCHEMA)
        tables.write_output(
            frame, cfg, tables.SEGMENT_RUNS, {"segment": result.segment, "run_date": result.run_date},
            partition_by=("run_date",), description="One row per segment per night: status, sizes, durations.",
        )


def summary_table(results: Sequence[SegmentResult], tracking_uri: str) -> str:
    """A readable end-of-job summary: one line per segment.

    `members` counts the segment's own level (which may be a number, e.g. 0.30, rather than a named
    level); the NAMED_LEVELS columns (high / medium / low) are the sizes at the named levels, for comparison.
    """
    widths = {level: max(6, len(level) + 1) for level in NAMED_LEVELS}
    header = (f"{'segment':<22} {'status':<22} {'level':>6} {'eligible':>8} {'members':>7} "
              + "".join(f"{level:>{width}} " for level, width in widths.items())
              + f"{'AUC-PR':>7} {'model':>6}  mlflow run")
    lines = [header, "-" * len(header)]
    for r in results:
        auc = f"{r.holdout_auc_pr:.3f}" if r.holdout_auc_pr is not None else "-"
        by_level = "".join(f"{_count(r.members_by_level.get(level)):>{width}} " for level, width in widths.items())
        lines.append(
            f"{r.segment:<22} {r.status:<22} {r.precision_level or '-':>6} {r.eligible_count:>8} "
            f"{r.member_count:>7} {by_level}{auc:>7} {r.model_version or '-':>6}  {r.mlflow_run_id or '-'}"
        )
        if r.reason:
            lines.append(f"{'':<22} ↳ {r.reason}")
        if r.retrained and r.retrain_reason:
            lines.append(f"{'':<22} ↳ retrained: {r.retrain_reason}")
        if r.reachable_hint:
            lines.append(f"{'':<22} ↳ instead: {r.reachable_hint}")
        if r.levels:
            lines.extend(format_levels(r.levels, r.base_rate, indent=" " * 4))
        lines.extend(r.level_lines)
    lines.append(f"MLflow: {tracking_uri}")
    return "\n".join(lines)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def failed_result(segment: SegmentDefinition, run_date: date, exc: BaseException,
                  timer: StageTimer) -> SegmentResult:
    log.error("segment %s failed on %s: %s\n%s", segment.name, run_date, exc, traceback.format_exc())
    return SegmentResult(
        segment=segment.name, run_date=run_date, status=STATUS_FAILED,
        reason=f"{type(exc).__name__}: {exc}"[:1000], stage_seconds=dict(timer.durations),
    )


@dataclass(frozen=True)
class MemberCounts:
    eligible: int  # scored eligible users: every row of the slice
    members: int  # members at the segment's own level
    control: int
    by_level: dict[str, int]  # members at each counted named level


def count_members(membership: DataFrame, levels: Sequence[str]) -> MemberCounts:
    """Eligible, per-level and control counts of one night's membership in one aggregation."""
    aggregates = [F.count(F.lit(1)).alias("eligible"), F.count_if(F.col("is_member")).alias("members"),
                  F.count_if(F.col("control_group")).alias("control")]
    aggregates += [F.count_if(F.col(f"member_{lv}")).alias(f"level_{lv}") for lv in levels]
    row = membership.agg(*aggregates).first()
    return MemberCounts(eligible=int(row["eligible"] or 0), members=int(row["members"] or 0),
                        control=int(row["control"] or 0),
                        by_level={lv: int(row[f"level_{lv}"] or 0) for lv in levels})

