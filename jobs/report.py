"""Write one night's segment report: ONE self-contained HTML file, readable offline.

    python -m jobs.report --date 2026-06-01
    python -m jobs.report --conf cluster --date 2026-06-01 --to s3a://reports/segments/2026-06-01.html

Reads the output tables (segment_runs, segment_thresholds, segment_backtest, segment_drift,
segment_membership) under the configured output location and shows, per segment that ran on --date:
the precision-vs-reach curve with each level's threshold, members per level and the base rate,
promised vs realized precision over the past nights, drift and membership churn, model quality, and
the most frequent reason_1 among tonight's members (where the membership table has reasons).

The file goes to <output root>/reports/segment_report_<date>.html unless --to names another file (a
local path or any Hadoop URI: s3a://, abfss://, gs://, hdfs://), and is logged as an artifact
(reports/segment_report_<date>.html) to each segment's scoring MLflow run of that night, unless
--no-mlflow. See docs/report.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from datetime import date
from pathlib import Path

if __package__ in (None, ""):  # spark-submit runs this file as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.options import EXIT_FAILED, EXIT_INVALID, EXIT_OK, iso_date, job_parser
from segments_lib.config import AppConfig, ConfigError, load_config
from segments_lib.locations import Location, LocationError
from segments_lib.progress import configure_logging
from segments_lib.promise.ledger import BACKTEST_COLUMNS
from segments_lib.report.data import ReportInput
from segments_lib.report.page import render

log = logging.getLogger("jobs.report")

NEWEST_DATES_SHOWN = 5
# segment_runs without stage_seconds (a map pandas would carry as lists of pairs) — the page uses none of it.
RUN_COLUMNS = ("run_date", "segment", "status", "reason", "eligible_count", "member_count", "members_high",
               "members_medium", "members_low", "control_count", "precision_level", "threshold", "threshold_high",
               "threshold_medium", "threshold_low", "model_name", "model_version", "mlflow_run_id",
               "holdout_auc_pr", "score_psi", "membership_entered", "membership_exited", "membership_jaccard",
               "finished_at")
THRESHOLD_COLUMNS = ("run_date", "segment", "model_version", "point", "threshold", "expected_precision",
                     "precision_lower", "expected_recall", "holdout_members", "expected_size_today")
DRIFT_COLUMNS = ("run_date", "segment", "column_name", "is_score", "psi", "drift_rank")


class ReportError(ValueError):
    """The report cannot be built with these arguments; the message says what to change."""


def default_target(cfg: AppConfig, run_date: date) -> Location:
    return cfg.output.root / "reports" / f"segment_report_{run_date.isoformat()}.html"


def _pandas(frame: DataFrame | None, columns: Sequence[str]):  # -> pd.DataFrame
    """The columns the page reads (those the table has; a missing one is all nulls, as in an older table)."""
    import pandas as pd

    if frame is None:
        return pd.DataFrame({c: [] for c in columns})
    present = [c for c in columns if c in frame.columns]
    result = frame.select(*present).toPandas()
    for column in columns:
        if column not in result.columns:
            result[column] = None
    return result


def read_report_input(spark: SparkSession, cfg: AppConfig, run_date: date, nights: int) -> ReportInput:
    """The slices of the output tables the report of `run_date` shows, as pandas frames."""
    from segments_lib.store import tables

    runs = tables.read_output(spark, cfg, tables.SEGMENT_RUNS)
    if runs is None:
        raise ReportError(f"no segment_runs table at {tables.output_path(cfg, tables.SEGMENT_RUNS)}: no night has "
                          "run with this config (check --conf and output.root)")
    dates = sorted(r.run_date for r in runs.select("run_date").distinct().collect())
    if run_date not in dates:
        newest = ", ".join(d.isoformat() for d in reversed(dates[-NEWEST_DATES_SHOWN:])) or "none"
        raise ReportError(f"segment_runs has no run on {run_date}; its newest run dates: {newest}")
    # Churn and drift look back `nights` run dates. The backtest is read whole up to the night (a few rows
    # per level and night): its scored dates lag by each segment's horizon, and the page keeps the newest.
    since = dates[max(0, dates.index(run_date) - nights + 1)]
    in_window = (F.col("run_date") >= F.lit(since)) & (F.col("run_date") <= F.lit(run_date))
    thresholds = tables.read_output(spark, cfg, tables.SEGMENT_THRESHOLDS)
    drift = tables.read_output(spark, cfg, tables.SEGMENT_DRIFT)
    backtest = tables.read_output(spark, cfg, tables.SEGMENT_BACKTEST)
    membership = tables.read_output(spark, cfg, tables.SEGMENT_MEMBERSHIP)
    reasons = None
    if membership is not None and "reason_1" in membership.columns:
        members = membership.where((F.col("run_date") == F.lit(run_date)) & F.coalesce("is_member", F.lit(False))
                                   & F.col("reason_1").isNotNull())
        reasons = _pandas(members.groupBy("segment", F.col("reason_1").alias("reason"))
                          .agg(F.count("*").alias("members")), ("segment", "reason", "members"))
    return ReportInput(
        run_date=run_date,
        runs=_pandas(runs.where(in_window), RUN_COLUMNS),
        thresholds=_pandas(thresholds.where(F.col("run_date") == F.lit(run_date)) if thresholds is not None else None,
                           THRESHOLD_COLUMNS),
        backtest=_pandas(backtest.where(F.col("evaluated_on") <= F.lit(run_date)) if backtest is not None else None,
                         [name for name, _, _ in BACKTEST_COLUMNS]),
        drift=_pandas(drift.where(in_window) if drift is not None else None, DRIFT_COLUMNS),
        reasons=reasons,
        history_nights=nights,
    )


def write_file(spark: SparkSession, local: Path, target: Location) -> None:
    """Copy the written page onto `target`: a plain copy on the local disk, Hadoop's FileSystem otherwise
    (the same connectors and credentials the tables use)."""
    if target.is_local:
        target.path.parent.mkdir(parents=True, exist_ok=True)
        target.path.write_bytes(local.read_bytes())
        return
    jvm = spark.sparkContext._jvm
    destination = jvm.org.apache.hadoop.fs.Path(str(target))
    filesystem = destination.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if filesystem.exists(destination) and filesystem.getFileStatus(destination).isDirectory():
        raise ReportError(f"--to {target} is a directory; name the file to write, e.g. {target / local.name}")
    filesystem.copyFromLocalFile(False, True, jvm.org.apache.hadoop.fs.Path(local.as_uri()), destination)


def log_to_runs(cfg: AppConfig, report: ReportInput, local: Path) -> list[str]:
    """Log the page to every scoring run of the night (reports/<file name>); returns the run ids."""
    import mlflow

    from segments_lib.store.tracking import configure_mlflow

    night = report.runs[report.runs["run_date"] == report.run_date]
    run_ids = sorted({r for r in night["mlflow_run_id"] if isinstance(r, str) and r})
    configure_mlflow(cfg.mlflow)
    client = mlflow.MlflowClient()
    for run_id in run_ids:
        client.log_artifact(run_id, str(local), "reports")
    return run_ids


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = job_parser(__doc__, "jobs.report", {
        EXIT_OK: "the report is written (and logged to the night's MLflow runs)",
        EXIT_FAILED: "reading the tables, writing the file or logging it to MLflow failed (one line says where)",
        EXIT_INVALID: "bad arguments or config: a date segment_runs has no run for, no segment_runs table; or the "
                      "environment (no Java, JARs that cannot be resolved). One line names what to change",
    })
    parser.add_argument("--date", type=iso_date, required=True, help="run date D, YYYY-MM-DD")
    parser.add_argument("--to", default=None, metavar="URI",
                        help="the file to write: a local path or a Hadoop URI (default: "
                        "<output root>/reports/segment_report_<date>.html)")
    parser.add_argument("--nights", type=int, default=30,
                        help="how many past run dates the history charts show (default 30)")
    parser.add_argument("--no-mlflow", action="store_true",
                        help="do not log the report as an artifact of the night's MLflow runs")
    args = parser.parse_args(argv)
    if args.nights < 1:
        parser.error(f"--nights {args.nights}: show at least 1 night")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()

    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    from segments_lib.store import tables
    from segments_lib.store.session import EnvironmentProblem, build_session

    target: Location | str | None = args.to
    step = "reading the tables"
    try:
        cfg = load_config(args.conf)
        target = Location.parse(args.to) if args.to else default_target(cfg, args.date)
        spark = build_session(cfg.spark, app_name="report")
        report = read_report_input(spark, cfg, args.date, args.nights)
        page = render(report, source=str(cfg.output.root))
        with tempfile.TemporaryDirectory(prefix="segment-report-") as folder:
            # The artifact keeps the default file name whatever --to is, so every run's reports/ looks alike.
            local = Path(folder) / default_target(cfg, args.date).name
            local.write_text(page, encoding="utf-8")
            step = f"writing {target}"
            write_file(spark, local, target)
            step = "logging the report to MLflow"
            run_ids = [] if args.no_mlflow else log_to_runs(cfg, report, local)
    except (ReportError, ConfigError, LocationError, EnvironmentProblem, tables.TableError) as exc:
        print(f"report: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except Exception as exc:  # Spark, storage and MLflow failures alike end as one line, not a stack trace
        reason = (str(exc.java_exception.toString()) if isinstance(exc, Py4JJavaError) else str(exc)).strip()
        kind = "" if isinstance(exc, (Py4JJavaError, PySparkException, OSError)) else f"{type(exc).__name__}: "
        print(f"report: {step} failed: {kind}{reason.splitlines()[0][:400] if reason else type(exc).__name__}",
              file=sys.stderr)
        return EXIT_FAILED

    segments = sorted(set(report.runs.loc[report.runs["run_date"] == args.date, "segment"]))
    logged = "not logged to MLflow (--no-mlflow)" if args.no_mlflow else f"logged to {len(run_ids)} MLflow runs"
    print(f"wrote the segment report of {args.date} ({len(segments)} segments: {', '.join(segments)}) to {target}; "
          f"{logged}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
