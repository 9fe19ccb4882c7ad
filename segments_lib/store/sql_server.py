"""Settings for serving the output tables over JDBC/ODBC with the Spark Thrift Server.

The Thrift Server is Spark's port of HiveServer2: BI tools connect to it with the Hive JDBC driver
(`jdbc:hive2://host:port/db`) or the Simba Spark ODBC driver. Table and view definitions live in a
Hive metastore so that they survive restarts; by default an embedded Derby database under the
workspace, replaceable by any metastore through `spark.conf` in the config overlay (an entry there
always wins over the defaults below).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from segments_lib.config import AppConfig

DEFAULT_DATABASE = "segments"
DEFAULT_PORT = 10000
AUTH_MODES = ("NOSASL", "NONE", "LDAP", "KERBEROS", "CUSTOM")


@dataclass(frozen=True)
class SqlServerSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    database: str = DEFAULT_DATABASE
    # NOSASL: plain Thrift without a SASL handshake, what PyHive's auth='NOSASL' and
    # `jdbc:hive2://...;auth=noSasl` speak. Put a TLS proxy or LDAP in front before leaving loopback.
    auth: str = "NOSASL"

    def __post_init__(self) -> None:
        if self.auth not in AUTH_MODES:
            raise ValueError(f"auth must be one of {', '.join(AUTH_MODES)}, found {self.auth!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, found {self.port}")

    @property
    def jdbc_url(self) -> str:
        suffix = ";auth=noSasl" if self.auth == "NOSASL" else ""
        return f"jdbc:hive2://{self.host}:{self.port}/{self.database}{suffix}"


def metastore_dir(cfg: AppConfig) -> Path:
    return cfg.workspace.path / "metastore_db"


def catalog_conf(cfg: AppConfig) -> dict[str, str]:
    """Spark settings for a persistent Hive catalog: embedded Derby under the workspace unless overridden."""
    workspace = cfg.workspace.path.resolve()  # embedded Derby: the workspace must be on the local disk
    defaults = {
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": str(workspace / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL":
            f"jdbc:derby:;databaseName={workspace / 'metastore_db'};create=true",
        # Hive's scratch and log folders default to /tmp/hive, shared by every user of the machine.
        "spark.hadoop.hive.exec.scratchdir": str(workspace / "hive" / "scratch"),
        "spark.hadoop.hive.exec.local.scratchdir": str(workspace / "hive" / "local-scratch"),
        "spark.hadoop.hive.server2.logging.operation.log.location": str(workspace / "hive" / "operation-logs"),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={workspace / 'hive'}",
    }
    return _without_overridden(defaults, cfg.spark.conf)


def thrift_conf(settings: SqlServerSettings) -> dict[str, str]:
    """HiveServer2 settings for the session's SparkConf, which HiveThriftServer2 copies into its HiveConf.

    spark-submit warns that it ignores these non-`spark.` keys on its command line; the session builder
    still hands them to the driver's SparkConf, which is where the server reads them.
    """
    return {
        "hive.server2.thrift.bind.host": settings.host,
        "hive.server2.thrift.port": str(settings.port),
        "hive.server2.transport.mode": "binary",
        "hive.server2.authentication": settings.auth,
        "hive.server2.enable.doAs": "false",
        # One Spark session shared by all JDBC connections: no per-connection session to build and tear
        # down, and the job's registrations are visible to every client. Clients do not get isolated
        # SET commands or temp views, which a read-mostly BI endpoint does not need.
        "spark.sql.hive.thriftServer.singleSession": "true",
    }


def _without_overridden(defaults: Mapping[str, str], configured: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in defaults.items() if key not in configured}
