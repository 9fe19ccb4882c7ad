"""Foundation: Delta round trip, MLflow round trip on the embedded store, session and config behaviour."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import Row

from segments_lib.config import ConfigError, load_config
from segments_lib.store import tables
from segments_lib.store.session import cached_delta_jars, local_mode_conf, parse_java_major
from tests.conftest import SESSION_SPARK, make_config
from tests.support.frames import assert_rows_equal


def test_delta_round_trip_partition_overwrite_time_travel_and_history(spark, tmp_path: Path) -> None:
    path = tmp_path / "t"
    first = spark.createDataFrame([Row(d=date(2026, 1, 1), k="a", v=1), Row(d=date(2026, 1, 2), k="b", v=2)])
    tables.replace_partition(first.where("d = DATE'2026-01-01'"), path, {"d": date(2026, 1, 1)}, ["d"])
    tables.append(first.where("d = DATE'2026-01-02'"), path)
    replacement = spark.createDataFrame([Row(d=date(2026, 1, 1), k="z", v=9)])
    tables.replace_partition(replacement, path, {"d": date(2026, 1, 1)})

    assert_rows_equal(tables.read_delta(spark, path), [(date(2026, 1, 1), "z", 9), (date(2026, 1, 2), "b", 2)],
                      columns=("d", "k", "v"))
    assert_rows_equal(tables.read_delta(spark, path, version=0), [("a", 1)], columns=("k", "v"))
    history = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").orderBy("version").collect()
    assert [h.version for h in history] == [0, 1, 2]
    assert [h.operation for h in history] == ["WRITE", "WRITE", "WRITE"]
    assert tables.delta_version(spark, path) == 2
    assert spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first().partitionColumns == ["d"]


def test_replace_partition_rejects_rows_outside_the_slice(spark, tmp_path: Path) -> None:
    path = tmp_path / "t"
    rows = spark.createDataFrame([Row(d=date(2026, 1, 1), v=1)])
    tables.replace_partition(rows, path, {"d": date(2026, 1, 1)}, ["d"])
    stray = spark.createDataFrame([Row(d=date(2026, 1, 5), v=1)])
    with pytest.raises(Exception, match=r"(?i)replaceWhere|does not conform|DELTA_REPLACE_WHERE"):
        tables.replace_partition(stray, path, {"d": date(2026, 1, 1)})
    assert tables.read_delta(spark, path).count() == 1


def test_mlflow_round_trip_registers_champion_and_scores(spark, tmp_path: Path) -> None:
    import mlflow
    import mlflow.spark
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler

    from segments_lib.store.tracking import configure_mlflow, ensure_experiment

    cfg = make_config(tmp_path / "ws")
    uri = configure_mlflow(cfg.mlflow)
    assert uri.startswith("sqlite:///") and str(tmp_path) in uri
    train = spark.createDataFrame([(float(x), 1.0 if x >= 5 else 0.0) for x in range(10)], ["x", "label"])
    model = Pipeline(stages=[
        VectorAssembler(inputCols=["x"], outputCol="features"),
        LogisticRegression(maxIter=50, regParam=0.0),
    ]).fit(train)
    experiment_id = ensure_experiment(cfg.mlflow, "roundtrip")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params({"max_iter": 50})
        mlflow.log_metric("auc", 1.0)
        # Explicit requirements, as training logs them: inferring them starts a second Spark JVM (~40 s).
        info = mlflow.spark.log_model(model, artifact_path="model", registered_model_name="roundtrip_model",
                                      pip_requirements=["pyspark"])
    client = mlflow.MlflowClient()
    client.set_registered_model_alias("roundtrip_model", "champion", info.registered_model_version)

    stored = client.get_run(run.info.run_id)
    assert stored.data.params == {"max_iter": "50"}
    assert stored.data.metrics == {"auc": 1.0}
    assert (tmp_path / "ws" / "mlflow" / "mlflow.db").exists()
    loaded = mlflow.spark.load_model("models:/roundtrip_model@champion")
    probe = spark.createDataFrame([(0.0,), (9.0,)], ["x"])
    assert [r.prediction for r in loaded.transform(probe).orderBy("x").collect()] == [0.0, 1.0]


def test_session_respects_master_set_by_spark_submit(spark, tmp_path: Path) -> None:
    jars = cached_delta_jars(make_config(tmp_path, spark=SESSION_SPARK).spark)  # the session fixture's set
    assert jars, "the session fixture resolves and caches Delta's JARs"
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent("""
        from segments_lib.config import load_config
        from segments_lib.store.session import build_session
        cfg = load_config(None, overrides={"spark": {"master": "local[2]"}})
        spark = build_session(cfg.spark)
        spark.range(3).write.format("delta").save(__import__("sys").argv[1])
        print("MASTER=" + spark.sparkContext.master)
        print("ROWS=%d" % spark.read.format("delta").load(__import__("sys").argv[1]).count())
    """))
    spark_submit = Path(sys.executable).parent / "spark-submit"
    result = subprocess.run(
        [str(spark_submit), "--master", "local[1]", "--jars", ",".join(jars), str(script), str(tmp_path / "d")],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MASTER=local[1]" in result.stdout
    assert "ROWS=3" in result.stdout


def test_local_sessions_never_expire_their_own_executor(spark) -> None:
    # The test session is local[2]: the heartbeat expiry that misfires under SPARK-59451 is off.
    assert spark.sparkContext.getConf().get("spark.storage.blockManagerHeartbeatTimeoutMs") == "7d"
    assert local_mode_conf("local[*]") == {"spark.storage.blockManagerHeartbeatTimeoutMs": "7d"}
    assert local_mode_conf("spark://master:7077") == {}


def test_overlay_merges_onto_base(tmp_path: Path) -> None:
    overlay = tmp_path / "mine.yaml"
    overlay.write_text("spark:\n  master: local[1]\nprecision_levels:\n  high: 0.9\n")
    cfg = load_config(overlay)
    assert cfg.spark.master == "local[1]"
    assert cfg.precision_levels == {"high": 0.9, "medium": 0.6, "low": 0.4}
    assert cfg.spark.conf["spark.sql.session.timeZone"] == "UTC"


def test_unknown_key_names_file_and_suggests(tmp_path: Path) -> None:
    overlay = tmp_path / "typo.yaml"
    overlay.write_text("spark:\n  mastr: local[1]\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml: unknown key 'spark\.mastr' \(did you mean 'master'\?\)"):
        load_config(overlay)


def test_bad_precision_level_is_rejected(tmp_path: Path) -> None:
    overlay = tmp_path / "bad.yaml"
    overlay.write_text("precision_levels:\n  high: 1.5\n")
    with pytest.raises(ConfigError, match=r"'precision_levels\.high' must be a number in \(0, 1\), found 1\.5"):
        load_config(overlay)


def test_tracking_uri_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert load_config(None).mlflow.tracking_uri == "http://127.0.0.1:5999"


@pytest.mark.parametrize(("text", "major"), [
    ('openjdk version "17.0.15" 2025-04-15', 17),
    ('java version "1.8.0_392"', 8),
    ('openjdk version "21" 2023-09-19', 21),
    ("garbage", None),
])
def test_java_version_parsing(text: str, major: int | None) -> None:
    assert parse_java_major(text) == major


def test_output_paths_cannot_escape_the_output_location(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    expected = tmp_path.resolve() / "tables" / "segment_membership"
    assert str(tables.output_path(cfg, "segment_membership")) == str(expected)
    for bad in ("../x", "a/../../x", "/etc/passwd", ""):
        with pytest.raises(tables.UnsafePathError):
            tables.output_path(cfg, bad)
