"""SQL for BI tools: the Spark Thrift Server serves the output tables over JDBC, and its catalog survives restarts."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession

from segments_lib.job.scoring import MEMBERSHIP_SCHEMA
from segments_lib.store import tables
from segments_lib.store.sql_server import SqlServerSettings, catalog_conf
from tests.conftest import make_config
from tests.support.thrift_server import sql_server

JUNE_1, JUNE_2, JUNE_3 = date(2026, 6, 1), date(2026, 6, 2), date(2026, 6, 3)


def membership(spark: SparkSession, rows: list[tuple[date, str, str, float, bool]]) -> DataFrame:
    """Membership rows in the real schema from (run_date, segment, user, score, member_high)."""
    full = [
        (run_date, segment, user, score, "high" if high else None, high, high, True, high, 0.7,
         f"segments_{segment}", 1, "run-1", False, None, None, None)
        for run_date, segment, user, score, high in rows
    ]
    return spark.createDataFrame(full, MEMBERSHIP_SCHEMA)


def write_night(spark: SparkSession, cfg, segment: str, run_date: date, rows) -> None:
    tables.write_output(membership(spark, rows), cfg, tables.SEGMENT_MEMBERSHIP,
                        {"segment": segment, "run_date": run_date}, partition_by=("segment", "run_date"))


def query(settings: SqlServerSettings, sql: str) -> list[tuple]:
    from pyhive import hive

    connection = hive.connect(host=settings.host, port=settings.port, auth=settings.auth,
                              database=settings.database)
    try:
        cursor = connection.cursor()
        cursor.execute(sql)
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        connection.close()


def test_jdbc_url_names_host_port_database_and_auth() -> None:
    assert SqlServerSettings(port=10001).jdbc_url == "jdbc:hive2://127.0.0.1:10001/segments;auth=noSasl"
    assert SqlServerSettings(host="bi.example", auth="LDAP").jdbc_url == "jdbc:hive2://bi.example:10000/segments"


def test_bad_settings_are_rejected_with_the_offending_value() -> None:
    with pytest.raises(ValueError, match=r"auth must be one of .*found 'PLAIN'"):
        SqlServerSettings(auth="PLAIN")
    with pytest.raises(ValueError, match=r"port must be in 1\.\.65535, found 70000"):
        SqlServerSettings(port=70000)


def test_catalog_defaults_to_derby_under_the_workspace_and_yields_to_the_overlay(tmp_path: Path) -> None:
    default = catalog_conf(make_config(tmp_path / "ws"))
    ws = (tmp_path / "ws").resolve()
    assert default["spark.sql.catalogImplementation"] == "hive"
    assert default["spark.hadoop.javax.jdo.option.ConnectionURL"] == (
        f"jdbc:derby:;databaseName={ws}/metastore_db;create=true")
    assert default["spark.sql.warehouse.dir"] == f"{ws}/warehouse"

    external = make_config(tmp_path / "ws", spark={"conf": {"spark.hadoop.hive.metastore.uris": "thrift://hms:9083",
                                                            "spark.sql.warehouse.dir": "s3a://lake/wh"}})
    overridden = catalog_conf(external)
    assert "spark.sql.warehouse.dir" not in overridden  # the overlay's own value stays in force
    assert overridden["spark.sql.catalogImplementation"] == "hive"


@pytest.mark.slow
def test_thrift_server_serves_the_current_view_and_its_catalog_survives_a_restart(spark, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    cfg = make_config(workspace)
    three_nights = membership(spark, [
        (JUNE_1, "churn_risk", "u1", 0.9, True), (JUNE_1, "churn_risk", "u2", 0.2, False),
        (JUNE_2, "churn_risk", "u1", 0.8, True), (JUNE_2, "churn_risk", "u3", 0.95, True),
        (JUNE_1, "high_value", "u2", 0.6, False),
    ])
    three_nights.write.format("delta").partitionBy("segment", "run_date").save(
        str(tables.output_path(cfg, tables.SEGMENT_MEMBERSHIP)))
    overlay = tmp_path / "server.yaml"
    overlay.write_text(
        f"workspace: {workspace}\n"
        "spark:\n  master: local[1]\n  conf:\n    spark.driver.memory: 1g\n    spark.ui.enabled: 'false'\n"
        "    spark.sql.shuffle.partitions: '1'\n    spark.databricks.delta.snapshotPartitions: '1'\n"
    )

    with sql_server(overlay, tmp_path / "first.log") as server:
        # latest night per segment: churn_risk June 2 (u1, u3), high_value June 1 (u2)
        assert query(server, "SELECT segment, run_date, user_id, member_high FROM segment_membership_current "
                             "ORDER BY segment, user_id") == [
            ("churn_risk", "2026-06-02", "u1", True),
            ("churn_risk", "2026-06-02", "u3", True),
            ("high_value", "2026-06-01", "u2", False),
        ]
        tables_listed = {row[1] for row in query(server, "SHOW TABLES IN segments")}
        assert {"segment_membership", "segment_membership_current"} <= tables_listed
        # an analyst's own view, stored only in the metastore: it can only come back if the catalog persists
        query(server, "CREATE VIEW segments.churn_top AS SELECT user_id FROM segments.segment_membership_current "
                      "WHERE segment = 'churn_risk' AND score >= 0.9")
        # a new night lands while the server runs: the view reads the latest Delta version
        write_night(spark, cfg, "churn_risk", JUNE_3, [(JUNE_3, "churn_risk", "u4", 0.97, True)])
        assert query(server, "SELECT user_id FROM segment_membership_current WHERE segment = 'churn_risk'") == [
            ("u4",)]

    with sql_server(overlay, tmp_path / "second.log") as restarted:
        assert query(restarted, "SELECT user_id FROM churn_top") == [("u4",)]
        assert query(restarted, "SELECT count(*) FROM segment_membership WHERE segment = 'churn_risk'") == [(5,)]
