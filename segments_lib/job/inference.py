"""Batch inference in the mlops-stacks shape: a model URI and features in, one score per user out."""

from __future__ import annotations

import mlflow.spark
from pyspark.sql import DataFrame, SparkSession


def score(spark: SparkSession, model_uri: str, features: DataFrame | str) -> DataFrame:
    """`user_id`, `score` (the calibrated probability) for every row of `features`.

    `features` is a frame, or the name of a table holding one, with `user_id` and the model's feature
    columns. The model (`models:/<name>/<version>`, a run or a path) is the Spark ML pipeline training
    logged, whose last stage is the isotonic calibrator that writes `score`.
    """
    frame = spark.table(features) if isinstance(features, str) else features
    return mlflow.spark.load_model(model_uri).transform(frame).select("user_id", "score")
