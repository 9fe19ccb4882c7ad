"""Baselines benchmark (issue 19): the nightly score against recency, frequency, BG/NBD and LightGBM.

    .venv/bin/python -m benchmarks.baselines                      # Online Retail and the demo, one run
    .venv/bin/python -m benchmarks.baselines --data retail --horizons 90 --cutoffs 2011-09-01

For each data set, cutoff D and horizon H, a "purchase again within H" segment (`occurs` of the
purchase event, everyone seen before T eligible, default training settings except the minimum class
counts) is trained exactly as the nightly job trains it for run date D (`training.fit_and_calibrate`:
the calendar, the one feature pass, the time-based fit, the calibrator and the thresholds on the
calibration snapshot), then every user with history before D is scored at T = D and ranked against
what happened in [D, D + H). On the same users and the same history (events before D only):

* recency: the fewest days since the last purchase first (never-purchased last);
* frequency: the most purchases in the past window first;
* BG/NBD (`model.bgnbd`, Fader–Hardie–Lee 2005) fitted on every user's (x, t_x, T) before D, ranked two
  ways: by the expected purchases in the next H (`bgnbd`), and by the probability of at least one purchase
  in the next H (`bgnbd_p_any`, which is the question the segment asks);
* LightGBM on the project's own features and training rows (nulls as NaN; `is_unbalance` only when the
  segment's `training.class_weight` is `balanced`, so both learners see the same weighting);
* the GBT's own score (`raw_gbt`), the raw score the calibrator reads (`raw`: for this `occurs` segment
  the GBT + BG/NBD quantile blend, model/blend.py), and the membership `score` (raw → calibrator), the
  column the membership table ships.

Metrics: AUC-ROC, AUC-PR, and lift at each shipped precision level: the level's membership size m at D
(users whose score reaches its threshold), and every ranking's positive rate in its own top m over the
base rate. Printed as Markdown and written to benchmarks/_work/baselines.json.
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
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from sklearn.metrics import average_precision_score, roc_auc_score

from benchmarks.quality import RETAIL_RUN_DATE, demo_events, retail_events
from segments_lib.config import AppConfig, load_config
from segments_lib.features.frame import eligible_features
from segments_lib.features.spec import freq_name, recency_name
from segments_lib.language.definitions import TRAINERS, Eligibility, Occurs, SegmentDefinition, TrainingSettings
from segments_lib.language.snapshots import midnight_utc
from segments_lib.language.targets import build_labels
from segments_lib.model import bgnbd
from segments_lib.model.blend import GBT_SCORE
from segments_lib.model.pipeline import RAW_SCORE
from segments_lib.model.training import build_training_frame, fit_and_calibrate, is_training_row, segment_calendar
from segments_lib.store.session import build_session

WORK = Path(__file__).resolve().parent / "_work"
PURCHASE = "Purchase Completed"
RETAIL_CUTOFFS = (date(2011, 7, 1), date(2011, 8, 1), date(2011, 9, 1))
RETAIL_HORIZONS = (7, 30, 90)
DEMO_HORIZONS = (7, 30)
LIGHTGBM = dict(n_estimators=200, learning_rate=0.03, num_leaves=15, min_child_samples=50, subsample=0.8,
                subsample_freq=1, colsample_bytree=0.8, verbose=-1)
RANKINGS = ("membership", "raw", "raw_gbt", "recency", "frequency", "bgnbd", "bgnbd_p_any", "lightgbm")
BASELINES = ("recency", "frequency", "bgnbd", "bgnbd_p_any", "lightgbm")


def purchase_segment(horizon_days: int, past_window: timedelta, windows: tuple[timedelta, ...],
                     settings: TrainingSettings) -> SegmentDefinition:
    """What a new user writes: purchase again within H, default eligibility (everyone seen before T)."""
    return SegmentDefinition(
        name=f"purchase_within_{horizon_days}d", kind="conversion", target=Occurs(events=(PURCHASE,)),
        past_window=past_window, prediction_window=timedelta(days=horizon_days), precision_level="medium",
        feature_windows=windows, eligible=Eligibility(), training=settings,
    )


def bgnbd_statistics(events: DataFrame, cutoff: datetime) -> pd.DataFrame:
    """user_id, x, t_x, T in days from the history before `cutoff`.

    A user is born at their first event of any kind (on retail that is their first purchase). Repeat
    transactions are distinct purchase days other than the birth day, as BG/NBD is usually fitted;
    t_x is the last of them, T the cutoff, both in days since birth.
    """
    history = events.where(F.col("event_time") < F.lit(cutoff))
    day = F.to_date("event_time")
    birth = history.groupBy("user_id").agg(F.min(day).alias("birth"))
    purchases = (history.where(F.col("event_name") == PURCHASE).select("user_id", day.alias("day")).distinct()
                 .join(birth, on="user_id", how="inner").where(F.col("day") > F.col("birth"))
                 .groupBy("user_id").agg(F.count(F.lit(1)).alias("x"), F.max("day").alias("last")))
    cutoff_day = F.lit(cutoff.date())
    stats = birth.join(purchases, on="user_id", how="left").select(
        "user_id",
        F.coalesce(F.col("x"), F.lit(0)).cast("double").alias("x"),
        F.coalesce(F.datediff("last", "birth"), F.lit(0)).cast("double").alias("t_x"),
        F.datediff(cutoff_day, "birth").cast("double").alias("T"),
    )
    return stats.toPandas()


def lift_at(labels: np.ndarray, scores: np.ndarray, members: int) -> float | None:
    """Positive rate among the `members` highest scores over the base rate (ties broken by order)."""
    if members <= 0:
        return None
    top = np.argsort(-scores, kind="stable")[:members]
    return float(labels[top].mean() / labels.mean())


def lightgbm_scores(train: pd.DataFrame, scoring: pd.DataFrame, feature_cols: list[str], seed: int,
                    balanced: bool) -> np.ndarray:
    """LightGBM weighted as the GBT is (`training.class_weight`), so the comparison is like for like."""
    import lightgbm as lgb

    model = lgb.LGBMClassifier(random_state=seed, is_unbalance=balanced, **LIGHTGBM)
    model.fit(train[feature_cols].astype(float), train["label"])
    return model.predict_proba(scoring[feature_cols].astype(float))[:, 1]


def evaluate_cutoff(cfg: AppConfig, events: DataFrame, segment: SegmentDefinition, cutoff: date,
                    dataset: str, dump_dir: Path | None = None) -> dict[str, Any]:
    start = time.perf_counter()
    calendar = segment_calendar(segment, cutoff)
    frame, feature_cols = build_training_frame(events, segment, calendar)
    frame = frame.select("snapshot_time", "user_id", F.col("label").cast("int").alias("label"), *feature_cols).persist()
    trained = fit_and_calibrate(cfg, segment, frame, feature_cols, calendar)
    model = PipelineModel(stages=trained.final_model.stages)

    # Night D: every eligible user's features from the history before D, labels from [D, D + H).
    night = eligible_features(events, segment, [calendar.scoring], as_of=calendar.scoring)
    labels = build_labels(events, night.population, segment.target, segment.prediction_window)
    rows = night.rows(labels)
    scored = model.transform(rows)
    scored = scored.select("user_id", "label", RAW_SCORE, "score", *feature_cols,
                           *([GBT_SCORE] if GBT_SCORE in scored.columns else []))
    night_pd = scored.toPandas()
    stats = bgnbd_statistics(events, calendar.scoring)
    night_pd = night_pd.merge(stats, on="user_id", how="left")
    params = bgnbd.fit_bgnbd(stats["x"], stats["t_x"], stats["T"])
    horizon_days = segment.prediction_window / timedelta(days=1)
    night_pd["bgnbd"] = bgnbd.expected_purchases(params, horizon_days, night_pd["x"], night_pd["t_x"], night_pd["T"])
    night_pd["bgnbd_p_any"] = bgnbd.p_any(params, horizon_days, night_pd["x"], night_pd["t_x"], night_pd["T"])
    # Never purchased: recency is null; it sorts after every purchaser.
    night_pd["recency"] = -night_pd[recency_name(PURCHASE)].fillna(1e9)
    night_pd["frequency"] = night_pd[freq_name(segment.past_window, PURCHASE)]
    # LightGBM learns from exactly the GBT's training rows.
    train_pd = frame.where(is_training_row(calendar, segment.training.seed)).select(*feature_cols, "label").toPandas()
    night_pd["lightgbm"] = lightgbm_scores(train_pd, night_pd, feature_cols, segment.training.seed,
                                           segment.training.class_weight == "balanced")
    # raw: the score the calibrator reads (the GBT + BG/NBD blend for `occurs`); raw_gbt: the GBT alone.
    night_pd["membership"], night_pd["raw"] = night_pd["score"], night_pd[RAW_SCORE]
    night_pd["raw_gbt"] = night_pd[GBT_SCORE] if GBT_SCORE in night_pd else night_pd[RAW_SCORE]

    if dump_dir is not None:  # every user's rankings, for analyses that need more than the summary
        dump_dir.mkdir(parents=True, exist_ok=True)
        night_pd[["user_id", "label", *RANKINGS]].to_parquet(
            dump_dir / f"{dataset.replace(' ', '_')}_{cutoff.isoformat()}_{int(horizon_days)}d.parquet")
    y = night_pd["label"].to_numpy()
    result: dict[str, Any] = {
        "dataset": dataset, "cutoff": cutoff.isoformat(), "horizon_days": int(horizon_days),
        "past_window_days": segment.past_window.days, "users": len(night_pd), "base_rate": float(y.mean()),
        "train_rows": trained.fit.n_train, "blended": trained.fit.blended,
        "holdout_users": int(trained.metrics["n_holdout"]),
        "holdout_auc_roc_raw": trained.metrics["auc_roc"], "features": len(feature_cols),
        "distinct_scores": int(night_pd["score"].nunique()), "distinct_raw": int(night_pd[RAW_SCORE].nunique()),
        "bgnbd_params": vars(params),
    }
    levels = {name: c for name, c in trained.choices.items()}
    for ranking in RANKINGS:
        s = night_pd[ranking].to_numpy(dtype=float)
        result[f"{ranking}_auc_roc"] = float(roc_auc_score(y, s))
        result[f"{ranking}_auc_pr"] = float(average_precision_score(y, s))
    for name, choice in levels.items():
        members = int((night_pd["score"] >= choice.threshold).sum()) if choice.threshold is not None else 0
        result[f"members_{name}"] = members
        for ranking in RANKINGS:
            result[f"{ranking}_lift_{name}"] = lift_at(y, night_pd[ranking].to_numpy(dtype=float), members)
    best = max(BASELINES, key=lambda b: result[f"{b}_auc_roc"])
    result["best_baseline"] = best
    result["membership_minus_best_auc_roc"] = result["membership_auc_roc"] - result[f"{best}_auc_roc"]
    result["membership_minus_best_auc_pr"] = result["membership_auc_pr"] - max(
        result[f"{b}_auc_pr"] for b in BASELINES)
    result["seconds"] = round(time.perf_counter() - start, 1)
    trained.scored.unpersist()
    frame.unpersist()
    return result


def markdown(results: list[dict[str, Any]]) -> str:
    def f(v: Any) -> str:
        return "–" if v is None else (f"{v:+.3f}" if isinstance(v, float) and abs(v) < 0.5 and v < 0 else
                                      f"{v:.3f}" if isinstance(v, float) else str(v))

    head = ["data", "cutoff", "H", "base rate", "users", *(f"{r} ROC" for r in RANKINGS),
            "membership − best ROC", *(f"{r} PR" for r in RANKINGS), "membership − best PR", "distinct scores"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r["dataset"], r["cutoff"], f"{r['horizon_days']}d", f(r["base_rate"]), str(r["users"]),
                 *(f(r[f"{k}_auc_roc"]) for k in RANKINGS), f"{r['membership_minus_best_auc_roc']:+.3f}",
                 *(f(r[f"{k}_auc_pr"]) for k in RANKINGS), f"{r['membership_minus_best_auc_pr']:+.3f}",
                 str(r["distinct_scores"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Lift at the shipped levels (members at D; each ranking's top-m positive rate / base rate):", ""]
    levels = sorted({k[len("members_"):] for r in results for k in r if k.startswith("members_")})
    head = ["data", "cutoff", "H", *(f"{lv} members" for lv in levels),
            *(f"{lv}: {k}" for lv in levels for k in ("membership", "recency", "bgnbd", "lightgbm"))]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r["dataset"], r["cutoff"], f"{r['horizon_days']}d", *(str(r.get(f"members_{lv}", 0)) for lv in levels),
                 *(f(r.get(f"{k}_lift_{lv}")) for lv in levels for k in ("membership", "recency", "bgnbd", "lightgbm"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def settings_for(args: argparse.Namespace) -> TrainingSettings:
    # Default training settings (60 trees, depth 3, 50 rows per leaf, unweighted, the BG/NBD blend, K = 4,
    # stride 7d), minimum class counts lowered for a
    # 4k-customer shop; the search is off unless asked for, since it is 3 extra fits per cell.
    base = TrainingSettings(min_positives=30, min_negatives=30, trainer=args.trainer)
    return base if args.search else replace(base, search=())


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    cfg = load_config(args.conf)
    spark: SparkSession = build_session(cfg.spark, app_name="baselines-benchmark")
    spark.conf.set("spark.sql.shuffle.partitions", str(args.shuffle_partitions))
    settings = settings_for(args)
    results: list[dict[str, Any]] = []
    if "retail" in args.data:
        events = retail_events(spark).persist()
        for horizon in args.horizons or RETAIL_HORIZONS:
            segment = purchase_segment(horizon, timedelta(days=180),
                                       (timedelta(days=30), timedelta(days=90), timedelta(days=180)), settings)
            for cutoff in args.cutoffs or RETAIL_CUTOFFS:
                if midnight_utc(cutoff) + timedelta(days=horizon) > midnight_utc(RETAIL_RUN_DATE):
                    continue  # the label window is not over on the last day of the data
                result = evaluate_cutoff(cfg, events, segment, cutoff, "Online Retail", args.dump)
                print(json.dumps(result, default=str), flush=True)
                results.append(result)
        events.unpersist()
    if "demo" in args.data:
        end = date.fromisoformat(cfg.demo.end_date)
        events = demo_events(spark, args.users, args.days, end, cfg.demo.seed).persist()
        for horizon in args.horizons or DEMO_HORIZONS:
            segment = purchase_segment(horizon, timedelta(days=28), (timedelta(days=7), timedelta(days=28)), settings)
            # Three cutoffs a week apart whose label window closes by the end of the demo data.
            for back in (14, 7, 0):
                cutoff = end - timedelta(days=horizon + back)
                result = evaluate_cutoff(cfg, events, segment, cutoff, f"demo {args.users // 1000}k", args.dump)
                print(json.dumps(result, default=str), flush=True)
                results.append(result)
        events.unpersist()
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / args.output).write_text(json.dumps(results, indent=2, default=str))
    print(markdown(results))
    spark.stop()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", default=None)
    parser.add_argument("--data", type=lambda s: s.split(","), default=["retail", "demo"])
    parser.add_argument("--horizons", type=lambda s: [int(v) for v in s.split(",")], default=None)
    parser.add_argument("--cutoffs", type=lambda s: [date.fromisoformat(v) for v in s.split(",")], default=None)
    parser.add_argument("--dump", type=Path, default=None,
                        help="directory for one parquet per cell: every user's label and rankings")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--search", action="store_true", help="run the time-based depth search (3 extra fits)")
    parser.add_argument("--shuffle-partitions", type=int, default=4)
    parser.add_argument("--output", default="baselines.json")
    parser.add_argument("--trainer", choices=TRAINERS, default="gbt", help="training.trainer of the segment")
    args = parser.parse_args(argv)
    started = datetime.now()
    run(args)
    print(f"total wall time {timedelta(seconds=round((datetime.now() - started).total_seconds()))}")


if __name__ == "__main__":
    main()
