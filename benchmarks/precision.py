"""Does a precision level's promise survive on a snapshot the thresholds never saw?

For each demo segment, with run date D = end of the demo history − horizon (so that the snapshot at D
has a closed label window [D, D + H) inside the history):

1. train the segment's GBT on the calendar's training snapshots (D − 2H − k·S), as training does;
2. score the calibration snapshot D − H, fit the isotonic calibrator on its calibration fold and choose
   one threshold per precision level on its threshold fold (segments_lib.promise.calibration);
3. score the *next* complete snapshot, T = D, with the model + calibrator and the chosen thresholds,
   and measure the realized precision of each level against what happened in [D, D + H).

Reported per level: promised precision, the held-out point estimate and lower bound, realized precision
and members; targets: realized ≥ lower bound, |realized − point estimate| ≤ 0.05.

    .venv/bin/python benchmarks/precision.py --users 20000 --days 120 [--segments a,b] [--full-search]

Prints a markdown table (paste into benchmarks/RESULTS.md, "## Precision levels").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pyarrow.parquet as pq
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from segments_lib.config import AppConfig, load_config
from segments_lib.features.frame import at_snapshot, eligible_features, is_holdout
from segments_lib.intake.demo import generate_events
from segments_lib.language.definitions import SegmentDefinition, segment_levels
from segments_lib.language.segment_config import load_segments
from segments_lib.language.snapshots import midnight_utc, snapshot_calendar
from segments_lib.language.targets import build_labels
from segments_lib.model.pipeline import fit_with_time_validation
from segments_lib.promise.calibration import STATUS_OK, choose_thresholds, fit_calibrator, score_table
from segments_lib.store.session import build_session

MAX_GAP = 0.05


def load_demo_events(spark: SparkSession, users: int, days: int, end_date: date, seed: int, folder: Path) -> DataFrame:
    path = folder / "events.parquet"
    pq.write_table(generate_events(users, days, end_date, seed), path)
    return spark.read.parquet(str(path)).persist()


def labelled_rows(events: DataFrame, segment: SegmentDefinition, snapshots: list) -> tuple[DataFrame, list[str]]:
    """Features and labels of the eligible users at `snapshots`, from the history before the last one."""
    eligible = eligible_features(events, segment, snapshots, as_of=max(snapshots))
    labels = build_labels(events, eligible.population, segment.target, segment.prediction_window)
    return eligible.rows(labels), eligible.columns


def realized(scored: DataFrame, thresholds: dict[str, float]) -> dict[str, tuple[int, int]]:
    """(members, true positives) per level on the evaluation snapshot, in one aggregation."""
    aggs = []
    for i, t in enumerate(thresholds.values()):
        inside = F.col("score") >= F.lit(t)
        aggs += [F.count(F.when(inside, 1)).alias(f"m{i}"), F.sum(F.when(inside, F.col("label"))).alias(f"tp{i}")]
    row = scored.agg(*aggs).first()
    return {lv: (int(row[f"m{i}"]), int(row[f"tp{i}"] or 0)) for i, lv in enumerate(thresholds)}


def run_segment(events: DataFrame, cfg: AppConfig, segment: SegmentDefinition, end_date: date,
                full_search: bool) -> list[str]:
    horizon = segment.horizon
    run_date = end_date - timedelta(days=horizon.days + (1 if horizon.seconds else 0))
    settings = segment.training if full_search else replace(segment.training, search=(segment.training.gbt,))
    calendar = snapshot_calendar(run_date, horizon, settings.snapshots, settings.stride)
    evaluation_time = midnight_utc(run_date)
    started = time.perf_counter()
    rows, feature_cols = labelled_rows(events, segment, [*calendar.labelled, evaluation_time])
    rows = rows.persist()
    training = rows.where(F.col("snapshot_time") <= F.lit(calendar.training[0]))
    fit = fit_with_time_validation(training, feature_cols, settings)

    holdout = fit.model.transform(rows.where(is_holdout(calendar)))
    result = fit_calibrator(holdout.select("user_id", "raw_score", "label"), seed=settings.seed)
    levels = segment_levels(cfg.precision_levels, segment)
    table = score_table(result.threshold_fold)
    choices = choose_thresholds(table, levels, cfg.nightly.min_segment_size, cfg.nightly.confidence)

    scorer = PipelineModel(stages=[*fit.model.stages, result.calibrator])
    evaluation = scorer.transform(rows.where(at_snapshot(evaluation_time)))
    reachable = {lv: c.threshold for lv, c in choices.items() if c.status == STATUS_OK and c.threshold is not None}
    outcome = realized(evaluation, reachable) if reachable else {}
    base_rate = evaluation.agg(F.avg("label")).first()[0]
    rows.unpersist()
    seconds = time.perf_counter() - started

    lines = []
    for level, choice in sorted(choices.items(), key=lambda kv: -kv[1].target_precision):
        if choice.status != STATUS_OK:
            lines.append(
                f"| {segment.name} | {level} | {choice.target_precision:.2f} | unreachable (best "
                f"{choice.best_precision:.3f} at {choice.best_precision_members}) | – | – | – | – | – | – |"
            )
            continue
        members, hits = outcome[level]
        precision = hits / members if members else float("nan")
        above_bound = precision >= choice.precision_lower
        close = abs(precision - choice.expected_precision) <= MAX_GAP
        lines.append(
            f"| {segment.name} | {level} | {choice.target_precision:.2f} | {choice.threshold:.4f} "
            f"| {choice.expected_precision:.3f} | {choice.precision_lower:.3f} | {choice.holdout_members} "
            f"| {precision:.3f} | {members} | {'yes' if above_bound else 'NO'} / {'yes' if close else 'NO'} |"
        )
    lines.append(
        f"| {segment.name} | (segment) | base rate next {base_rate:.3f} | Brier {result.brier_before:.4f} → "
        f"{result.brier_after:.4f} | cal/thr rows {result.calibration_rows}/{result.threshold_rows} "
        f"| {seconds:.0f} s | | | | |"
    )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--segments", default="", help="comma-separated names; default: all demo segments")
    parser.add_argument("--full-search", action="store_true", help="run the hyperparameter search (slower)")
    args = parser.parse_args(argv)

    cfg = load_config(None)
    end_date = date.fromisoformat(cfg.demo.end_date)
    segments = load_segments(cfg.segments_file, cfg.precision_levels)
    wanted = [s for s in args.segments.split(",") if s]
    chosen = [s for s in segments if not wanted or s.name in wanted]
    spark = build_session(cfg.spark, app_name="benchmark-precision")
    with tempfile.TemporaryDirectory() as folder:
        events = load_demo_events(spark, args.users, args.days, end_date, args.seed, Path(folder))
        print(f"demo: {args.users} users, {args.days} days to {end_date}, {events.count()} events")
        print("| segment | level | promised | threshold | point est. | lower bound | held-out members "
              "| realized | next-snapshot members | ≥ bound / within 0.05 |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for segment in chosen:
            for line in run_segment(events, cfg, segment, end_date, args.full_search):
                print(line, flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
