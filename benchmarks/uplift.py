"""Uplift benchmark: who buys *because* of a campaign, against propensity, random and the true uplift.

    .venv/bin/python -m benchmarks.uplift --users 6000 --days 120

The demo generator with randomized campaigns (`intake.campaigns`: every 7 days, each user sent with
probability 0.5, a heterogeneous true effect on carts) gives events and, per user and campaign day,
the true uplift P(purchase in 7 days | sent) − P(… | not sent). The segment is likely_to_purchase
from conf/segments.yaml (its features, P1 = 28d, P3 = 7d, eligibility), with `treated` = a
`Campaign Sent` in the first day of P3. Snapshots are campaign days: the newest `--holdout` are held
out (their users judged), the `--train` before them train; the newest training label window closes
when the oldest holdout window opens, so no training label sees a holdout outcome.

On the same held-out users, one ranking each:
* uplift: each learner of `model.uplift` fitted on the training snapshots, and the one `fit_uplift`
  chooses by validation Qini on the newest training snapshots, with the GBT settings of the shipped
  uplift segment (conf/segments_uplift.yaml, campaign_responders; `--learner-gbt propensity` for
  likely_to_purchase's, as the runs before 2026-12-04's third session did);
* propensity: today's likely_to_purchase GBT (`fit_with_time_validation`, treatment ignored, its own
  GBT settings from conf/segments.yaml);
* engagement booster: today's engagement_booster target (a notification click in 7 days), its GBT with
  its own settings;
* random: uniform scores (the Qini of one draw, and the mean of 200 draws);
* oracle: the generator's true uplift.
Qini coefficient, the expected Qini coefficient from the true uplift (`expected_qini`: free of outcome
noise), AUUC, incremental purchases if the top 10 % / 30 % were all sent (treated − control
purchase rate in that top, times its users), and the realised uplift of the uplift ranking's top 10 %
with Newcombe's 95 % interval. Printed as Markdown, written to benchmarks/_work/uplift.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from segments_lib.config import load_config
from segments_lib.features.frame import eligible_features
from segments_lib.intake import campaigns as demo_campaigns
from segments_lib.intake import demo
from segments_lib.language.definitions import Occurs, SegmentDefinition, Treatment
from segments_lib.language.segment_config import load_segments
from segments_lib.language.snapshots import midnight_utc
from segments_lib.language.targets import build_labels
from segments_lib.language.treatment import behaviour_events, treatment_flags
from segments_lib.model import uplift_metrics
from segments_lib.model.pipeline import RAW_SCORE, fit_with_time_validation
from segments_lib.model.uplift import FITTERS, LEARNERS, TREATED_COL, UPLIFT_COL, fit_uplift
from segments_lib.store.session import build_session

WORK = Path(__file__).resolve().parent / "_work"
KEYS = ["snapshot_time", "user_id"]
UPLIFT_SEGMENTS = Path(__file__).resolve().parent.parent / "conf" / "segments_uplift.yaml"
UPLIFT_SEGMENT = "campaign_responders"


def campaign_events(spark: SparkSession, users: int, days: int, end: date, seed: int) -> DataFrame:
    path = WORK / f"uplift_events_{users}u_{days}d_{seed}.parquet"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        pq.write_table(demo.generate_events(users, days, end, seed, campaigns=demo_campaigns.CampaignSpec()), path)
    return spark.read.parquet(str(path))


def labelled_rows(events: DataFrame, segment: SegmentDefinition, snapshot_days: list[date], as_of: date,
                  click_target: Occurs) -> tuple[DataFrame, list[str]]:
    """Features, purchase label, click label and treated flag of the eligible users at each campaign day."""
    behaviour = behaviour_events(events, segment)  # sends are not activity, nor features
    eligible = eligible_features(behaviour, segment, [midnight_utc(d) for d in snapshot_days], midnight_utc(as_of))
    purchases = build_labels(events, eligible.population, segment.target, segment.prediction_window)
    clicks = build_labels(events, eligible.population, click_target, segment.prediction_window)
    treated = treatment_flags(events, eligible.population, segment.treatment.events, segment.treatment.window)
    keyed = (purchases.join(clicks.withColumnRenamed("label", "click_label"), on=KEYS)
             .join(treated, on=KEYS))
    return eligible.rows(keyed), eligible.columns


def expected_qini(score: np.ndarray, true_uplift: np.ndarray) -> float:
    """The Qini coefficient a ranking would have with every user's outcome replaced by its expectation.

    Targeting the top k by `score` yields Σ true uplift over them; per user of the holdout that is the
    expected Qini curve (the realised curve's expectation: q / n_t → Σ τ / N), and the coefficient is
    its area above the random line, as `uplift_metrics.qini_coefficient`'s. No outcome noise enters:
    on 7,200 users the realised coefficient of random rankings scatters by ±0.0024, this one not at all,
    so two rankings' difference is their difference in true incremental purchases.
    """
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    tau = np.asarray(true_uplift, dtype=float)[order]
    n = tau.size
    curve = np.r_[0.0, np.cumsum(tau)] / n
    fraction = np.arange(n + 1) / n
    return float(np.trapezoid(curve - fraction * curve[-1], fraction))


def metrics_of(name: str, score: np.ndarray, holdout: pd.DataFrame, oracle_qini: float | None,
               oracle_expected: float | None = None) -> dict[str, Any]:
    treated, outcome = holdout[TREATED_COL].to_numpy(), holdout["label"].to_numpy()
    row: dict[str, Any] = {"ranking": name, **uplift_metrics.summary(score, treated, outcome)}
    row["expected_qini"] = expected_qini(score, holdout["true_uplift"].to_numpy())
    if oracle_qini:
        row["share_of_oracle_qini"] = row["qini_coefficient"] / oracle_qini
    if oracle_expected:
        row["share_of_oracle_expected_qini"] = row["expected_qini"] / oracle_expected
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = load_config(args.conf)
    spark = build_session(cfg.spark, app_name="uplift-benchmark")
    end = date.fromisoformat(cfg.demo.end_date)
    segments = {s.name: s for s in load_segments(cfg.segments_file, cfg.precision_levels)}
    segment = segments["likely_to_purchase"]
    # The learners fit with the shipped uplift segment's GBT settings (or likely_to_purchase's with
    # --learner-gbt propensity), each propensity model with its own segment's: every ranking as it ships.
    shipped = {s.name: s for s in load_segments(UPLIFT_SEGMENTS, cfg.precision_levels)}[UPLIFT_SEGMENT]
    base_gbt = shipped.training.gbt if args.learner_gbt == "uplift" else segment.training.gbt
    gbt = replace(base_gbt, **{k: v for k, v in (("max_depth", args.max_depth), ("max_iter", args.max_iter),
                                                ("min_instances_per_node", args.min_instances))
                               if v is not None})
    propensity_settings = {label: replace(segments[name].training, search=())
                           for name, label in (("likely_to_purchase", "label"), ("engagement_booster", "click_label"))}
    segment = replace(segment, kind="uplift", training=replace(segment.training, search=(), gbt=gbt),
                      treatment=Treatment((demo_campaigns.CAMPAIGN_SENT,), timedelta(days=1)))
    click_target = segments["engagement_booster"].target
    spec = demo.DemoSpec(args.users, args.days, end, cfg.demo.seed)
    # Campaign days whose label window lies inside the history and whose past window is complete.
    days = [d for d in demo_campaigns.campaign_days(spec, demo_campaigns.CampaignSpec())
            if d + segment.prediction_window <= end and d - segment.past_window >= spec.start_date]
    days = sorted(days)[-(args.train + args.holdout):]
    train_days, holdout_days = days[:args.train], days[args.train:]
    print(f"campaign days: training {train_days[0]} .. {train_days[-1]} ({len(train_days)}), "
          f"holdout {', '.join(map(str, holdout_days))}")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    events = campaign_events(spark, args.users, args.days, end, cfg.demo.seed).persist()
    rows, feature_cols = labelled_rows(events, segment, days, end, click_target)
    rows = rows.persist()
    n_rows = rows.count()
    timings["features_and_labels"] = time.perf_counter() - start
    is_holdout = F.to_date("snapshot_time").isin([F.lit(d) for d in holdout_days])
    training, holdout_rows = rows.where(~is_holdout), rows.where(is_holdout)
    print(f"rows: {n_rows:,}, features: {len(feature_cols)}")

    truth = demo_campaigns.ground_truth_uplift(args.users, args.days, end, cfg.demo.seed, demo_campaigns.CampaignSpec(),
                                               snapshot_dates=holdout_days, replicas=args.replicas).to_pandas()
    holdout = holdout_rows.select(*KEYS, TREATED_COL, "label", "click_label").toPandas()
    holdout["snapshot_date"] = pd.to_datetime(holdout["snapshot_time"], utc=True).dt.date
    holdout = holdout.merge(truth[["snapshot_date", "user_id", "true_uplift"]], on=["snapshot_date", "user_id"],
                            how="left")
    if holdout["true_uplift"].isna().any():
        raise RuntimeError(f"{int(holdout['true_uplift'].isna().sum())} holdout users have no ground truth")

    ranked: dict[str, np.ndarray] = {}  # every ranking's holdout scores, aligned with `holdout`

    def scored(frame: DataFrame, column: str, name: str) -> np.ndarray:
        out = frame.select(*KEYS, F.col(column).alias(name)).toPandas()
        out["snapshot_date"] = pd.to_datetime(out["snapshot_time"], utc=True).dt.date
        ranked[name] = holdout.merge(out.drop(columns="snapshot_time"), on=["snapshot_date", "user_id"],
                                     how="left")[name].to_numpy()
        return ranked[name]

    oracle = metrics_of("oracle (true uplift)", holdout["true_uplift"].to_numpy(), holdout, None)
    table = [oracle]

    def judged(name: str, score: np.ndarray) -> None:
        table.append(metrics_of(name, score, holdout, oracle["qini_coefficient"], oracle["expected_qini"]))

    for learner in LEARNERS:
        start = time.perf_counter()
        model = FITTERS[learner](training, feature_cols, segment.training.gbt, segment.training.seed)
        timings[f"fit_{learner}"] = time.perf_counter() - start
        judged(f"uplift: {learner}", scored(model.transform(holdout_rows), UPLIFT_COL, learner))
    start = time.perf_counter()
    chosen = fit_uplift(training, feature_cols, segment.training.gbt, segment.training.seed)
    timings["fit_uplift_search"] = time.perf_counter() - start
    chosen_score = scored(chosen.model.transform(holdout_rows), UPLIFT_COL, "chosen")
    judged(f"uplift: chosen ({chosen.model.learner})", chosen_score)
    for name, label, column in (("propensity: likely_to_purchase", "label", "purchase_propensity"),
                                ("propensity: engagement_booster", "click_label", "click_propensity")):
        start = time.perf_counter()
        fit = fit_with_time_validation(training.withColumn("label", F.col(label)), feature_cols,
                                       propensity_settings[label])
        timings[f"fit_{label}"] = time.perf_counter() - start
        judged(name, scored(fit.model.transform(holdout_rows), RAW_SCORE, column))
    rng = np.random.default_rng(11)
    judged("random (one draw)", rng.random(len(holdout)))
    draws = [uplift_metrics.qini_coefficient(rng.random(len(holdout)), holdout[TREATED_COL].to_numpy(),
                                             holdout["label"].to_numpy()) for _ in range(200)]

    scores_path = WORK / f"{Path(args.out).stem}_scores.parquet"  # every holdout user's rankings, for analyses
    WORK.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"snapshot_date": holdout["snapshot_date"].astype(str), "user_id": holdout["user_id"],
                  "treated": holdout[TREATED_COL], "label": holdout["label"], "true_uplift": holdout["true_uplift"],
                  **ranked}).to_parquet(scores_path)
    top = chosen_score >= np.quantile(chosen_score, 0.9)
    t, y = holdout[TREATED_COL].to_numpy()[top], holdout["label"].to_numpy()[top]
    y_t, n_t, y_c, n_c = float((t * y).sum()), float(t.sum()), float(((1 - t) * y).sum()), float((1 - t).sum())
    low, high = uplift_metrics.difference_interval(y_t, n_t, y_c, n_c)
    all_t, all_y = holdout[TREATED_COL].to_numpy(), holdout["label"].to_numpy()
    result = {
        "users": args.users, "days": args.days, "gbt": str(gbt), "train_days": [str(d) for d in train_days],
        "holdout_days": [str(d) for d in holdout_days], "rows": n_rows, "holdout_users": len(holdout),
        "treated_share_holdout": float(all_t.mean()),
        "realised_ate": float(all_y[all_t == 1].mean() - all_y[all_t == 0].mean()),
        "mean_true_uplift": float(holdout["true_uplift"].mean()),
        "validation_qini": chosen.validation_qini, "chosen_learner": chosen.model.learner,
        "random_qini_mean_of_200": float(np.mean(draws)), "random_qini_sd_of_200": float(np.std(draws)),
        "top_decile_realised_uplift": {"treated_rate": y_t / n_t, "control_rate": y_c / n_c,
                                       "uplift": y_t / n_t - y_c / n_c, "ci95": [low, high],
                                       "treated": n_t, "control": n_c},
        "deciles": uplift_metrics.uplift_by_decile(chosen_score, all_t, all_y).to_dict(orient="records"),
        "table": table, "seconds": {k: round(v, 1) for k, v in timings.items()},
    }
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / args.out).write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: v for k, v in result.items() if k not in ("table", "deciles")}, indent=2, default=str))
    print(markdown(table))
    spark.stop()
    return result


def markdown(table: list[dict[str, Any]]) -> str:
    lines = ["| ranking | Qini coefficient | share of oracle | expected Qini (true uplift) | share of oracle | AUUC | "
             "incremental purchases, top 10 % | top 30 % |", "|---|---|---|---|---|---|---|---|"]
    for r in table:
        share = f"{r['share_of_oracle_qini']:.2f}" if "share_of_oracle_qini" in r else "1"
        expected_share = f"{r['share_of_oracle_expected_qini']:.2f}" if "share_of_oracle_expected_qini" in r else "1"
        lines.append(f"| {r['ranking']} | {r['qini_coefficient']:.4f} | {share} | {r['expected_qini']:.4f} | "
                     f"{expected_share} | {r['auuc']:.4f} | {r['incremental_top_10pct']:.1f} | "
                     f"{r['incremental_top_30pct']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", default=None)
    parser.add_argument("--users", type=int, default=6000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--train", type=int, default=8, help="training campaign days")
    parser.add_argument("--holdout", type=int, default=2, help="held-out campaign days (the newest)")
    parser.add_argument("--replicas", type=int, default=64, help="ground-truth Monte Carlo replicas per user")
    parser.add_argument("--learner-gbt", choices=("uplift", "propensity"), default="uplift",
                        help="the learners' GBT settings: conf/segments_uplift.yaml's campaign_responders (default) "
                             "or likely_to_purchase's (the runs before 2026-12-04's third session)")
    parser.add_argument("--max-depth", type=int, help="GBT max_depth of the learners (default: --learner-gbt's)")
    parser.add_argument("--max-iter", type=int, help="GBT max_iter of the learners (default: --learner-gbt's)")
    parser.add_argument("--min-instances", type=int, help="GBT min_instances_per_node of the learners")
    parser.add_argument("--out", default="uplift.json", help="result file name under benchmarks/_work")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
