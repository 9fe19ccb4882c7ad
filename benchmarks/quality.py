"""Model-quality benchmark: holdout AUC of each demo segment's Spark GBT against the Bayes-optimal AUC and LightGBM.

    .venv/bin/python -m benchmarks.quality --users 20000 --days 120
    .venv/bin/python -m benchmarks.quality --users 5000 --segments likely_to_purchase --no-retail

For each demo segment (conf/segments.yaml) at run date = the demo end date:
the training frame is built exactly as training does (`training.build_training_frame`: one feature
pass, labels, eligibility), the GBT is fitted with the time-based search (`training.fit_segment`)
on the training rows (`training.is_training_row`: the older snapshots and half of the calibration
snapshot's users), and the holdout (the other half of the calibration snapshot) is scored. On the same holdout users:
* Bayes-optimal AUC: the generator's true probability (`demo.ground_truth`) at the calibration snapshot
  ranked against the realised labels; it knows the latent state, so it is an upper bound;
* LightGBM on the same feature columns and training rows (nulls left as NaN, `is_unbalance`).
Then likely_to_purchase on the UCI Online Retail data (data/online_retail.parquet).
MLflow is not involved: this measures the model, not the bookkeeping. Results are printed as a
Markdown table and written to benchmarks/_work/quality.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from sklearn.metrics import average_precision_score, roc_auc_score

from segments_lib.config import load_config
from segments_lib.intake import demo
from segments_lib.language.definitions import SegmentDefinition
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
from segments_lib.store.session import build_session

WORK = Path(__file__).resolve().parent / "_work"
RETAIL = Path(__file__).resolve().parent.parent / "data" / "online_retail.parquet"
RETAIL_RUN_DATE = date(2011, 12, 9)


def demo_events(spark: SparkSession, users: int, days: int, end: date, seed: int) -> DataFrame:
    path = WORK / f"quality_events_{users}u_{days}d_{seed}.parquet"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        pq.write_table(demo.generate_events(users, days, end, seed), path)
    return spark.read.parquet(str(path))


def lightgbm_auc(train: pd.DataFrame, holdout: pd.DataFrame, feature_cols: list[str], seed: int) -> tuple[float, float]:
    import lightgbm as lgb

    model = lgb.LGBMClassifier(n_estimators=300, learning_rate=0.05, num_leaves=31, min_child_samples=20,
                               subsample=0.8, subsample_freq=1, is_unbalance=True, random_state=seed, verbose=-1)
    model.fit(train[feature_cols].astype(float), train["label"])
    scores = model.predict_proba(holdout[feature_cols].astype(float))[:, 1]
    return float(roc_auc_score(holdout["label"], scores)), float(average_precision_score(holdout["label"], scores))


def evaluate_segment(frame: DataFrame, feature_cols: list[str], segment: SegmentDefinition,
                     calendar: SnapshotCalendar, lightgbm: bool) -> tuple[dict[str, Any], pd.DataFrame]:
    frame = frame.persist()
    # The nightly split: every user at the older snapshots and half of D − H train, the other half is held out.
    holdout = frame.where(is_holdout_row(calendar, segment.training.seed))
    training = frame.where(is_training_row(calendar, segment.training.seed))
    start = time.perf_counter()
    fit = fit_segment(training, feature_cols, segment)
    train_seconds = time.perf_counter() - start
    scored = fit.model.transform(holdout).select("user_id", RAW_SCORE, "label").persist()
    metrics = holdout_metrics(scored)
    result: dict[str, Any] = {
        "segment": segment.name, "auc_roc": metrics["auc_roc"], "auc_pr": metrics["auc_pr"],
        "base_rate": metrics["base_rate"], "n_train": fit.n_train, "n_holdout": int(metrics["n_holdout"]),
        "train_seconds": round(train_seconds, 1), "chosen_max_depth": fit.params.max_depth,
        "features": len(feature_cols),
    }
    holdout_pd = scored.toPandas()
    if lightgbm:
        train_pd = training.select(*feature_cols, "label").toPandas()
        features_pd = holdout.select("user_id", *feature_cols).toPandas().merge(
            holdout_pd[["user_id", "label"]], on="user_id", how="inner")
        result["lightgbm_auc_roc"], result["lightgbm_auc_pr"] = lightgbm_auc(train_pd, features_pd, feature_cols,
                                                                             segment.training.seed)
    scored.unpersist()
    frame.unpersist()
    return result, holdout_pd


def bayes_auc(holdout: pd.DataFrame, truth: pd.DataFrame) -> dict[str, Any]:
    """AUCs of the true probability on the holdout users who have one, and the model's AUC on the same users."""
    both = holdout.merge(truth, on="user_id", how="inner").dropna(subset=["true_probability"])
    return {
        "bayes_users": len(both),
        "bayes_auc_roc": float(roc_auc_score(both["label"], both["true_probability"])),
        "bayes_auc_pr": float(average_precision_score(both["label"], both["true_probability"])),
        "model_auc_roc_same_users": float(roc_auc_score(both["label"], both[RAW_SCORE])),
    }


def retail_events(spark: SparkSession) -> DataFrame:
    """Online Retail → valid events, exactly as `jobs.load_online_retail` loads them (minus the writes)."""
    from segments_lib.intake import events, retail

    raw = retail.retail_to_events(spark.read.parquet(str(RETAIL)))
    conformed = events.conform(raw, retail.RETAIL_COLUMNS, retail.RETAIL_TIMEZONE)
    rules = events.ValidationRules(dedup_key=retail.RETAIL_DEDUP_KEY,
                                   max_rejected_share=retail.RETAIL_MAX_REJECTED_SHARE)
    as_of = datetime(RETAIL_RUN_DATE.year, RETAIL_RUN_DATE.month, RETAIL_RUN_DATE.day) + timedelta(days=1)
    return events.validate(conformed, as_of, rules, run_date=RETAIL_RUN_DATE).valid


def demo_results(spark: SparkSession, args: argparse.Namespace, segments: dict[str, SegmentDefinition],
                 end: date, seed: int) -> list[dict[str, Any]]:
    events = demo_events(spark, args.users, args.days, end, seed).persist()
    n_events = events.count()
    print(f"demo events: {n_events:,} ({args.users} users, {args.days} days)")
    calendars = {name: segment_calendar(segments[name], end) for name in args.segments}
    # one generator pass for every calibration date the segments need
    truth_all = demo.ground_truth(args.users, args.days, end, seed, replicas=args.replicas,
                                  snapshot_dates=sorted({c.calibration.date() for c in calendars.values()}),
                                  ).to_pandas()
    results = []
    for name in args.segments:
        segment, calendar = segments[name], calendars[name]
        start = time.perf_counter()
        frame, feature_cols = build_training_frame(events, segment, calendar)
        result, holdout = evaluate_segment(frame, feature_cols, segment, calendar, not args.no_lightgbm)
        result["total_seconds"] = round(time.perf_counter() - start, 1)
        at_snapshot = (truth_all["segment"] == name) & (truth_all["snapshot_date"] == calendar.calibration.date())
        truth = truth_all.loc[at_snapshot, ["user_id", "true_probability"]]
        result.update(bayes_auc(holdout, truth))
        result["ratio_to_bayes"] = result["auc_roc"] / result["bayes_auc_roc"]
        result["events"] = n_events
        print(json.dumps(result))
        results.append(result)
    return results


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    cfg = load_config(args.conf)
    spark = build_session(cfg.spark, app_name="quality-benchmark")
    end = date.fromisoformat(cfg.demo.end_date)
    segments = {s.name: s for s in load_segments(cfg.segments_file, cfg.precision_levels)}
    results = [] if args.retail_only else demo_results(spark, args, segments, end, cfg.demo.seed)
    if not args.no_retail:
        base = segments["likely_to_purchase"]
        segment = replace(base, duration_pairs=(), training=replace(base.training, min_positives=50,
                                                                    min_negatives=50))
        calendar = segment_calendar(segment, RETAIL_RUN_DATE)
        start = time.perf_counter()
        frame, feature_cols = build_training_frame(retail_events(spark), segment, calendar)
        result, _ = evaluate_segment(frame, feature_cols, segment, calendar, not args.no_lightgbm)
        result["segment"] = "likely_to_purchase (Online Retail)"
        result["total_seconds"] = round(time.perf_counter() - start, 1)
        print(json.dumps(result))
        results.append(result)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "quality.json").write_text(json.dumps(results, indent=2, default=str))
    print(markdown(results))
    spark.stop()
    return results


def markdown(results: list[dict[str, Any]]) -> str:
    def cell(row: dict[str, Any], key: str, fmt: str = ".3f") -> str:
        return format(row[key], fmt) if isinstance(row.get(key), (int, float, np.floating)) else "–"

    lines = ["| segment | base rate | GBT AUC-ROC | GBT AUC-PR | Bayes AUC-ROC | ratio | LightGBM AUC-ROC | "
             "LightGBM AUC-PR | holdout users | train rows | fit s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['segment']} | {cell(r, 'base_rate')} | {cell(r, 'auc_roc')} | {cell(r, 'auc_pr')} | "
            f"{cell(r, 'bayes_auc_roc')} | {cell(r, 'ratio_to_bayes')} | {cell(r, 'lightgbm_auc_roc')} | "
            f"{cell(r, 'lightgbm_auc_pr')} | {r['n_holdout']} | {r['n_train']} | {r['train_seconds']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", default=None)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--replicas", type=int, default=64, help="ground-truth Monte Carlo replicas per user")
    parser.add_argument("--segments", type=lambda s: s.split(","), default=list(demo.DEMO_SEGMENTS))
    parser.add_argument("--no-lightgbm", action="store_true")
    parser.add_argument("--no-retail", action="store_true")
    parser.add_argument("--retail-only", action="store_true", help="only the Online Retail run")
    args = parser.parse_args(argv)
    started = datetime.now()
    run(args)
    print(f"total wall time {timedelta(seconds=round((datetime.now() - started).total_seconds()))}")


if __name__ == "__main__":
    main()
