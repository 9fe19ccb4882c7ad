"""Batch inference in the mlops-stacks shape: a model URI and features in, one score per user out."""

from __future__ import annotations

import mlflow.spark
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession

from segments_lib.store import champion_copy
from segments_lib.store.tracking import ChampionInfo


def score(spark: SparkSession, model_uri: str, features: DataFrame | str) -> DataFrame:
    """`user_id`, `score` (the calibrated probability) for every row of `features`.

    `features` is a frame, or the name of a table holding one, with `user_id` and the model's feature
    columns. The model (`models:/<name>/<version>`, a run or a path) is the Spark ML pipeline training
    logged, whose last stage is the isotonic calibrator that writes `score`.
    """
    frame = spark.table(features) if isinstance(features, str) else features
    return mlflow.spark.load_model(model_uri).transform(frame).select("user_id", "score")


def scoring_pipeline(model: ChampionInfo) -> PipelineModel:
    """The Spark ML pipeline of a scoring model: the registered version or its champion copy."""
    if model.source == champion_copy.SOURCE:
        return champion_copy.load_pipeline(model)
    return mlflow.spark.load_model(model.model_uri)


def score_model(spark: SparkSession, model: ChampionInfo, features: DataFrame,
                pipeline: PipelineModel | None = None) -> DataFrame:
    """`score` with a scoring model; pass its loaded `pipeline` when the caller needs it too (reasons)."""
    loaded = pipeline if pipeline is not None else scoring_pipeline(model)
    return loaded.transform(features).select("user_id", "score")
