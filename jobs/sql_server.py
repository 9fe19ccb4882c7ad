"""SQL access for BI tools: the Spark Thrift Server (JDBC/ODBC) over the output tables.

    python -m jobs.sql_server --conf local                      # jdbc:hive2://127.0.0.1:10000/segments
    python -m jobs.sql_server --host 0.0.0.0 --port 10001       # reachable from other machines
    python -m jobs.sql_server --register-only                   # (re)register the tables, then exit

The server runs in this process's Spark driver (HiveThriftServer2.startWithContext), so it gets the
project's Delta settings and cached JARs exactly like the nightly job. At start, and every
--refresh-seconds after, it registers the output tables (`CREATE TABLE ... USING DELTA LOCATION`) and
the `segment_membership_current` view in a persistent Hive catalog (embedded Derby under the workspace
by default). Each query reads the latest Delta version, so new nights appear without a restart.
Stop it with SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # spark-submit runs this file as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.options import EXIT_INVALID, EXIT_OK, INVALID_MEANING, job_parser
from segments_lib.config import AppConfig, ConfigError, load_config
from segments_lib.progress import configure_logging
from segments_lib.store.sql_server import (
    AUTH_MODES,
    DEFAULT_DATABASE,
    DEFAULT_PORT,
    SqlServerSettings,
    catalog_conf,
    thrift_conf,
)

log = logging.getLogger("jobs.sql_server")
READY_MESSAGE = "SQL server ready"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = job_parser(__doc__, "jobs.sql_server", {
        EXIT_OK: "stopped by SIGTERM or Ctrl-C, or --register-only registered the tables",
        EXIT_INVALID: INVALID_MEANING,
    })
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"Thrift port (default {DEFAULT_PORT})")
    parser.add_argument("--database", default=None,
                        help="catalog database (default: output.catalog_database, else 'segments')")
    parser.add_argument("--auth", choices=AUTH_MODES, default="NOSASL", help="HiveServer2 authentication")
    parser.add_argument("--refresh-seconds", type=float, default=300.0,
                        help="how often to register tables that appeared since the start")
    parser.add_argument("--register-only", action="store_true", help="register the tables and views, then exit")
    return parser.parse_args(argv)


def _delta_on_driver_classpath(cfg: AppConfig) -> dict[str, str]:
    """Delta's own JARs on the driver's application class path, not only in `spark.jars`.

    Closing a JDBC session closes class loaders that share the JVM's open handles on the `spark.jars`
    JARs; afterwards Delta's classes and service files can no longer be read ("capturingClassReader is
    null", "Failed to find the data source: delta"). The application class loader is never closed.
    Only delta-spark and delta-storage go there: Delta's transitive JARs (an old Jackson, for one)
    would shadow Spark's own versions.
    """
    from segments_lib.store.session import cached_delta_jars

    jars = [j for j in cached_delta_jars(cfg.spark) or [] if re.search(r"delta-(spark|storage)[_-]", Path(j).name)]
    if not jars or "spark.driver.extraClassPath" in cfg.spark.conf:
        return {}
    return {"spark.driver.extraClassPath": ":".join(jars)}


def _server_config(cfg: AppConfig, settings: SqlServerSettings) -> AppConfig:
    extra = {**catalog_conf(cfg), **_delta_on_driver_classpath(cfg), **thrift_conf(settings)}
    spark_cfg = replace(cfg.spark, conf={**cfg.spark.conf, **extra})
    return replace(cfg, spark=spark_cfg, output=replace(cfg.output, catalog_database=settings.database))


def start_thrift_server(spark):  # -> py4j handle on HiveThriftServer2
    """Start HiveThriftServer2 inside this driver, sharing its session state and catalog."""
    jvm = spark.sparkContext._jvm
    return jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2.startWithContext(
        spark._jsparkSession.sqlContext()
    )


def wait_for_port(host: str, port: int, timeout_s: float = 120.0) -> None:
    """The Thrift service binds its port on a background thread: wait until clients can connect."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the Thrift server did not open {host}:{port} within {timeout_s}s (port taken?)")


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(argv)
    try:
        base = load_config(args.conf)
        settings = SqlServerSettings(host=args.host, port=args.port, auth=args.auth,
                                     database=args.database or base.output.catalog_database or DEFAULT_DATABASE)
    except (ConfigError, ValueError) as exc:
        log.error("%s", exc)
        return EXIT_INVALID
    cfg = _server_config(base, settings)

    from segments_lib.store.session import EnvironmentProblem, build_session
    from segments_lib.store.tables import register_views

    try:
        spark = build_session(cfg.spark, app_name="predictive-segments-sql")
    except EnvironmentProblem as exc:  # no Java, Delta JARs that cannot be resolved
        log.error("%s", exc)
        return EXIT_INVALID
    registered = register_views(spark, cfg)
    log.info("registered in `%s`: %s", settings.database, ", ".join(registered) or "nothing yet (no night has run)")
    if args.register_only:
        spark.stop()
        return EXIT_OK

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = start_thrift_server(spark)
    wait_for_port("127.0.0.1" if settings.host == "0.0.0.0" else settings.host, settings.port)
    print(f"{READY_MESSAGE}: {settings.jdbc_url}", flush=True)
    while not stop.wait(args.refresh_seconds):
        register_views(spark, cfg)
    log.info("stopping the SQL server")
    server.stop()
    spark.stop()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
