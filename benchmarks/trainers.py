"""Spark GBT and xgboost side by side on the same training frames (issue 24 item 2, `training.trainer`).

    .venv/bin/python -m benchmarks.trainers --users 145000 --days 120     # ≈ 10M events
    .venv/bin/python -m benchmarks.trainers --users 20000                 # the demo size

For each demo segment (conf/segments.yaml) at the demo end date, one feature pass builds the training
frame exactly as the nightly training does (`training.build_training_frame`), and the frame is persisted
and counted before any clock starts. Then each trainer fits on the same training rows
(`training.fit_segment`: the segment's own search and blend settings, only `trainer` differs) and scores
the same holdout users. The trainers take turns going first, segment by segment, so neither always
fits on a warmer JVM. `--retail` adds likely_to_purchase on Online Retail (data/online_retail.parquet).
MLflow is not involved: this measures the fit and the model. Prints a Markdown table and writes
benchmarks/_work/trainers_<users>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from datetime import date
from typing import Any

from pyspark.sql import DataFrame

from benchmarks.quality import RETAIL_RUN_DATE, WORK, demo_events, retail_events
from segments_lib.config import load_config
from segments_lib.language.definitions import TRAINERS, SegmentDefinition
from segments_lib.language.segment_config import load_segments
from segments_lib.language.snapshots import SnapshotCalendar
from segments_lib.model.evaluation import holdout_metrics
from segments_lib.model.pipeline import RAW_SCORE
from segments_lib.model.training import (
    build_training_frame,
    fit_segment,
    is_holdout_row,
    is_training_row,
    segment_calendar,
)
from segments_lib.progress import configure_logging
from segments_lib.store.session import build_session


def fit_and_judge(frame: DataFrame, feature_cols: list[str], segment: SegmentDefinition, calendar: SnapshotCalendar,
                  trainer: str) -> dict[str, Any]:
    """One trainer's fit on the training rows, timed, and its holdout AUCs."""
    segment = replace(segment, training=replace(segment.training, trainer=trainer))
    seed = segment.training.seed
    start = time.perf_counter()
    fit = fit_segment(frame.where(is_training_row(calendar, seed)), feature_cols, segment)
    fit_seconds = time.perf_counter() - start
    scored = fit.model.transform(frame.where(is_holdout_row(calendar, seed))).select(RAW_SCORE, "label").persist()
    metrics = holdout_metrics(scored)
    scored.unpersist()
    return {"fit_seconds": round(fit_seconds, 1), "auc_roc": metrics["auc_roc"], "auc_pr": metrics["auc_pr"],
            "n_train": fit.n_train, "n_holdout": int(metrics["n_holdout"]), "candidates": len(fit.candidates)}


def compare(frame: DataFrame, feature_cols: list[str], segment: SegmentDefinition, calendar: SnapshotCalendar,
            name: str, xgboost_first: bool) -> dict[str, Any]:
    frame = frame.persist()
    start = time.perf_counter()
    rows = frame.count()
    result: dict[str, Any] = {"segment": name, "frame_rows": rows, "features": len(feature_cols),
                              "feature_pass_seconds": round(time.perf_counter() - start, 1)}
    for trainer in (reversed(TRAINERS) if xgboost_first else TRAINERS):
        result[trainer] = fit_and_judge(frame, feature_cols, segment, calendar, trainer)
        print(json.dumps({"segment": name, "trainer": trainer, **result[trainer]}), flush=True)
    frame.unpersist()
    gbt, xgb = result["gbt"], result["xgboost"]
    result["speedup"] = gbt["fit_seconds"] / xgb["fit_seconds"]
    result["auc_roc_difference"] = xgb["auc_roc"] - gbt["auc_roc"]
    return result


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| segment | frame rows | features | GBT fit | xgboost fit | GBT / xgboost | GBT AUC-ROC | "
             "xgboost AUC-ROC | difference | GBT AUC-PR | xgboost AUC-PR |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        gbt, xgb = r["gbt"], r["xgboost"]
        lines.append(f"| {r['segment']} | {r['frame_rows']:,} | {r['features']} | {gbt['fit_seconds']:.1f} s | "
                     f"{xgb['fit_seconds']:.1f} s | {r['speedup']:.1f}× | {gbt['auc_roc']:.4f} | "
                     f"{xgb['auc_roc']:.4f} | {r['auc_roc_difference']:+.4f} | {gbt['auc_pr']:.4f} | "
                     f"{xgb['auc_pr']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--conf", default="local")
    parser.add_argument("--segments", nargs="*", default=None, help="demo segment names (default: all)")
    parser.add_argument("--retail", action="store_true", help="also likely_to_purchase on Online Retail")
    args = parser.parse_args(argv)

    cfg = load_config(args.conf)
    spark = build_session(cfg.spark, app_name="trainers-benchmark")
    end = date.fromisoformat(cfg.demo.end_date)
    segments = {s.name: s for s in load_segments(cfg.segments_file, cfg.precision_levels)}
    names = args.segments or [name for name, s in segments.items() if s.kind != "uplift"]
    events = demo_events(spark, args.users, args.days, end, cfg.demo.seed).persist()
    n_events = events.count()
    print(f"demo events: {n_events:,} ({args.users:,} users, {args.days} days)", flush=True)
    results = []
    for i, name in enumerate(names):
        calendar = segment_calendar(segments[name], end)
        frame, feature_cols = build_training_frame(events, segments[name], calendar)
        results.append(compare(frame, feature_cols, segments[name], calendar, name, xgboost_first=i % 2 == 1))
    events.unpersist()
    if args.retail:
        base = segments["likely_to_purchase"]
        segment = replace(base, duration_pairs=(), training=replace(base.training, min_positives=50, min_negatives=50))
        calendar = segment_calendar(segment, RETAIL_RUN_DATE)
        frame, feature_cols = build_training_frame(retail_events(spark), segment, calendar)
        results.append(compare(frame, feature_cols, segment, calendar, "likely_to_purchase (Online Retail)",
                               xgboost_first=len(names) % 2 == 1))
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / f"trainers_{args.users}.json").write_text(json.dumps({"events": n_events, "results": results}, indent=2))
    print(markdown(results))
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
