"""Holdout metrics of a scored frame (`raw_score` or `score`, `label`): ranking, probability and lift.

AUC-ROC and AUC-PR come from Spark's BinaryClassificationEvaluator; log loss, Brier score, base rate
and the top-decile lift come from one aggregation after one percentile pass.
"""

from __future__ import annotations

from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

PROBABILITY_FLOOR = 1e-15  # log loss of a confident mistake is large but finite
TOP_DECILE = 0.9


def auc(scored: DataFrame, score_col: str, metric: str) -> float:
    evaluator = BinaryClassificationEvaluator(rawPredictionCol=score_col, labelCol="label", metricName=metric)
    return float(evaluator.evaluate(scored.select(F.col(score_col).cast("double"), F.col("label").cast("double"))))


def holdout_metrics(scored: DataFrame, score_col: str = "raw_score") -> dict[str, float]:
    """auc_roc, auc_pr, log_loss, brier, base_rate, lift_top_decile and n_holdout of a scored holdout.

    The top decile is every row scoring at or above the 90th percentile (approximate, 1e-4 relative
    error), so ties at the cut-off all enter; lift is the decile's positive rate over the base rate.
    """
    missing = [c for c in (score_col, "label") if c not in scored.columns]
    if missing:
        raise ValueError(f"scored holdout lacks columns: {', '.join(missing)}")
    p = F.least(F.greatest(F.col(score_col).cast("double"), F.lit(PROBABILITY_FLOOR)), F.lit(1 - PROBABILITY_FLOOR))
    y = F.col("label").cast("double")
    cutoff = scored.agg(F.percentile_approx(score_col, TOP_DECILE, 10_000).alias("cutoff")).first()["cutoff"]
    in_top = F.col(score_col) >= F.lit(cutoff)
    stats = scored.agg(
        F.count(F.lit(1)).alias("n"),
        F.avg(y).alias("base_rate"),
        F.avg(-(y * F.log(p) + (1 - y) * F.log(1 - p))).alias("log_loss"),
        F.avg((F.col(score_col) - y) ** 2).alias("brier"),
        F.avg(F.when(in_top, y)).alias("top_rate"),
    ).first()
    base_rate = float(stats["base_rate"])
    return {
        "auc_roc": auc(scored, score_col, "areaUnderROC"),
        "auc_pr": auc(scored, score_col, "areaUnderPR"),
        "log_loss": float(stats["log_loss"]),
        "brier": float(stats["brier"]),
        "base_rate": base_rate,
        "lift_top_decile": float(stats["top_rate"]) / base_rate if base_rate > 0 else 0.0,
        "n_holdout": float(stats["n"]),
    }
