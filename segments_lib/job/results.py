"""One night for one run date: validate events, (re)train when due, score, write membership and run tables.

A plain function taking the session, the config and the segments (the mlops-stacks batch-inference
shape). One segment's failure never stops the others: each gets a status in `segment_runs`.
"""

from __future__ import annotations

import logging
import time
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
from segments_lib.language.definitions import SegmentDefinition
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
    StructField("members_high", LongType()),
    StructField("members_medium", LongType()),
    StructField("members_low", LongType()),
    StructField("control_count", LongType()),
    StructField("precision_level", StringType()),
    StructField("threshold", DoubleType()),
    StructField("threshold_high", DoubleType()),
    StructField("threshold_medium", DoubleType()),
    StructField("threshold_low", DoubleType()),
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
])


@dataclass
class SegmentResult:
    """What one segment's night produced: the row of `segment_runs` and the summary line."""
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

    def as_row(self) -> tuple:
        return (
            self.run_date, self.segment, self.status, self.reason, self.retrained, self.retrain_reason,
            self.eligible_count, self.member_count, self.members_by_level.get("high"),
            self.members_by_level.get("medium"), self.members_by_level.get("low"), self.control_count,
            self.precision_level, self.threshold, self.thresholds.get("high"), self.thresholds.get("medium"),
            self.thresholds.get("low"), self.model_name, self.model_version, self.mlflow_run_id,
            self.holdout_auc_pr, self.events_version, self.score_psi, self.top_drifting_features,
            self.precision_flag, self.membership_entered, self.membership_exited, self.membership_jaccard,
            {k: float(v) for k, v in self.stage_seconds.items()}, float(sum(self.stage_seconds.values())),
            datetime.now(timezone.utc).replace(tzinfo=None),
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
    level); high / medium / low are the sizes at the named levels, for comparison.
    """
    header = f"{'segment':<22} {'status':<22} {'level':>6} {'eligible':>8} {'members':>7} {'high':>6} " \
             f"{'medium':>7} {'low':>6} {'AUC-PR':>7} {'model':>6}  mlflow run"
    lines = [header, "-" * len(header)]
    for r in results:
        auc = f"{r.holdout_auc_pr:.3f}" if r.holdout_auc_pr is not None else "-"
        lines.append(
            f"{r.segment:<22} {r.status:<22} {r.precision_level or '-':>6} {r.eligible_count:>8} "
            f"{r.member_count:>7} {_count(r.members_by_level.get('high')):>6} "
            f"{_count(r.members_by_level.get('medium')):>7} {_count(r.members_by_level.get('low')):>6} "
            f"{auc:>7} {r.model_version or '-':>6}  {r.mlflow_run_id or '-'}"
        )
        if r.reason:
            lines.append(f"{'':<22} ↳ {r.reason}")
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


def count_members(membership: DataFrame, levels: Sequence[str]) -> dict[str, int]:
    """Eligible, per-level and control counts of one night's membership in one aggregation."""
    aggregates = [F.count(F.lit(1)).alias("eligible"), F.count_if(F.col("is_member")).alias("members"),
                  F.count_if(F.col("control_group")).alias("control")]
    aggregates += [F.count_if(F.col(f"member_{lv}")).alias(lv) for lv in levels]
    row = membership.agg(*aggregates).first()
    return {k: int(row[k] or 0) for k in row.asDict()}


def elapsed_since(start: float) -> float:
    return time.perf_counter() - start
