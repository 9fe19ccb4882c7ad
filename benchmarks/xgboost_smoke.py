"""Smoke test for issue 24's faster trainer: xgboost's own PySpark estimator on this project's Spark.

    .venv/bin/python -m benchmarks.xgboost_smoke      # xgboost-cpu is a runtime dependency (setup.py)

`xgboost.spark.SparkXGBClassifier` in a Spark ML pipeline built by this project's session (local mode,
Delta configured): fit, transform, save and load the pipeline, then log it with `mlflow.spark` to a
SQLite tracking store and load it back. Prints each step's outcome and the fit's seconds; exits 1 with
the failing step's message. `xgboost-cpu` is the wheel without the CUDA runtime (the `xgboost` wheel
pulls in nvidia-nccl-cu12, about 200 MB).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    try:
        from xgboost.spark import SparkXGBClassifier
    except ImportError as exc:
        print(f"xgboost is not installed ({exc}): .venv/bin/python -m pip install xgboost-cpu==3.2.0", file=sys.stderr)
        return 1
    import mlflow
    import mlflow.spark
    import xgboost
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    from segments_lib.config import load_config
    from segments_lib.store.session import build_session

    spark = build_session(load_config("local").spark, app_name="xgboost-smoke")
    rows = spark.range(20_000).select(F.rand(1).alias("a"), F.rand(2).alias("b"))
    rows = rows.withColumn("label", ((F.col("a") + 0.3 * F.rand(3)) > 0.6).cast("double")).persist()
    cores = spark.sparkContext.defaultParallelism
    pipeline = Pipeline(stages=[
        VectorAssembler(inputCols=["a", "b"], outputCol="features"),
        SparkXGBClassifier(features_col="features", label_col="label", num_workers=cores, n_estimators=50,
                           max_depth=3),
    ])
    start = time.perf_counter()
    model = pipeline.fit(rows)
    print(f"xgboost {xgboost.__version__}, pyspark {spark.version}: fit {time.perf_counter() - start:.1f} s "
          f"(20,000 rows, 2 features, 50 trees, {cores} barrier workers)")
    scored = model.transform(rows).select("probability").limit(20).collect()
    folder = Path(tempfile.mkdtemp(prefix="xgboost-smoke-"))
    model.write().overwrite().save(str(folder / "pipeline"))
    again = PipelineModel.load(str(folder / "pipeline")).transform(rows).select("probability").limit(20).collect()
    print(f"transform: ok; save and load: {'same probabilities' if again == scored else 'DIFFERENT probabilities'}")
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    # The store's default artifact root is ./mlruns under the current directory: keep the artifacts here too.
    experiment = mlflow.create_experiment("xgboost-smoke", artifact_location=(folder / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.spark.log_model(model, artifact_path="model",
                                      pip_requirements=[f"xgboost=={xgboost.__version__}"])
    reloaded = mlflow.spark.load_model(info.model_uri).transform(rows).select("probability").limit(20).collect()
    print(f"mlflow.spark log and load: {'same probabilities' if reloaded == scored else 'DIFFERENT probabilities'}")
    print(f"gain importances: {model.stages[-1].get_feature_importances(importance_type='gain')}")
    spark.stop()
    return 0 if again == scored == reloaded else 1


if __name__ == "__main__":
    sys.exit(main())
