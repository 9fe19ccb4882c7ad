"""SparkSession with Delta Lake configured: local mode by default, spark-submit's settings respected.

Delta's JARs are resolved once from Maven Central (Ivy, through `spark.jars.packages`) into a cache
directory; the resolved list is written to a manifest so later runs pass `spark.jars` and skip
resolution. If Ivy cannot reach Maven Central while Maven can, the same JARs are fetched with
`mvn dependency:copy-dependencies`. Clusters without internet access list pre-downloaded JARs in
`spark.delta_jars`. Run `python -m segments_lib.store.session --submit-args` to print the `--jars` flag
for `spark-submit`.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from pyspark import SparkConf, SparkContext
from pyspark.errors import PySparkRuntimeError
from pyspark.sql import SparkSession

from segments_lib.config import ConfigError, SparkConfig, load_config

log = logging.getLogger(__name__)

MIN_JAVA = 17
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


class EnvironmentProblem(RuntimeError):
    """The machine lacks something Spark needs (Java, Delta JARs).

    The message is one line that says what is wrong and names the setting to fix (JAVA_HOME,
    spark.delta_package, spark.delta_jars); the jobs print it and exit with code 2.
    """


def _java_binary() -> str | None:
    """The java Spark's launcher will run: $JAVA_HOME/bin/java when JAVA_HOME is set, else java on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        java = Path(java_home) / "bin" / "java"
        if not java.is_file():
            raise EnvironmentProblem(
                f"JAVA_HOME={java_home} has no bin/java, and Spark runs the java under JAVA_HOME: point "
                f"JAVA_HOME at a Java {MIN_JAVA}+ installation, or unset it to use java from PATH."
            )
        return str(java)
    return shutil.which("java")


def parse_java_major(version_output: str) -> int | None:
    """Major version from `java -version` output: '17.0.15' → 17, '1.8.0_392' → 8."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check_java(min_major: int = MIN_JAVA) -> int:
    """Return Java's major version, or raise a clear error naming what was found and what is needed."""
    java = _java_binary()
    if java is None:
        raise EnvironmentProblem(
            f"Java not found: Spark 4 needs Java {min_major} or newer, and there is no JAVA_HOME and no java on "
            f"PATH. Install it (e.g. `apt-get install openjdk-{min_major}-jdk-headless`) or set JAVA_HOME."
        )
    result = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    output = result.stderr + result.stdout
    major = parse_java_major(output)
    if major is None or major < min_major:
        found = output.strip().splitlines()[0] if output.strip() else "no version output"
        raise EnvironmentProblem(
            f"Java at {java} is too old or unrecognised ({found}); Spark 4 needs Java {min_major}+. "
            f"Set JAVA_HOME to a Java {min_major}+ installation."
        )
    return major


def packages(cfg: SparkConfig) -> list[str]:
    """Every Maven package the session needs: Delta, then `spark.extra_packages` (e.g. the S3A connector)."""
    return [cfg.delta_package, *cfg.extra_packages]


def _manifest_path(cfg: SparkConfig) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", cfg.delta_package)
    if cfg.extra_packages or cfg.exclude_packages:  # another set of JARs: its own manifest
        digest = hashlib.sha256("|".join([*packages(cfg), "-", *cfg.exclude_packages]).encode()).hexdigest()
        safe = f"{safe}+{digest[:12]}"
    return cfg.jars_cache_dir.expanduser() / f"{safe}.jars.txt"


def cached_delta_jars(cfg: SparkConfig) -> list[str] | None:
    """JARs to pass as spark.jars: configured ones, else a complete cached resolution, else None."""
    if cfg.delta_jars:
        missing = [j for j in cfg.delta_jars if "://" not in j and not Path(j).expanduser().exists()]
        if missing:
            raise EnvironmentProblem(f"spark.delta_jars lists JARs that do not exist: {', '.join(missing)}; "
                                     "fix the paths in spark.delta_jars (or empty it to resolve spark.delta_package)")
        return [str(Path(j).expanduser()) if "://" not in j else j for j in cfg.delta_jars]
    manifest = _manifest_path(cfg)
    if not manifest.exists():
        return None
    jars = [line for line in manifest.read_text().splitlines() if line.strip()]
    if jars and all(Path(j).exists() for j in jars):
        return jars
    return None


def _write_manifest(cfg: SparkConfig, jars: list[str]) -> None:
    manifest = _manifest_path(cfg)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text("\n".join(jars) + "\n")
    tmp.replace(manifest)  # atomic: a concurrent reader never sees half a list


def _pom(cfg: SparkConfig) -> str:
    """A throwaway POM depending on every package, each with the configured exclusions."""
    exclusions = "".join(
        f"<exclusion><groupId>{g}</groupId><artifactId>{a}</artifactId></exclusion>"
        for g, a in (e.split(":") for e in cfg.exclude_packages)
    )
    dependencies = "".join(
        f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version>"
        f"<exclusions>{exclusions}</exclusions></dependency>"
        for g, a, v in (p.split(":") for p in packages(cfg))
    )
    return ('<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
            "<groupId>local</groupId><artifactId>segments-jars</artifactId><version>1</version>"
            f"<dependencies>{dependencies}</dependencies></project>")


def resolve_with_maven(cfg: SparkConfig) -> list[str]:
    """Fetch the packages and their runtime dependencies with Maven into the JAR cache."""
    dest = _manifest_path(cfg).with_suffix("").with_suffix(".maven")
    dest.mkdir(parents=True, exist_ok=True)
    pom = _pom(cfg)
    extras = f", spark.extra_packages ({', '.join(cfg.extra_packages)})" if cfg.extra_packages else ""
    fix = (f"check spark.delta_package ({cfg.delta_package}){extras} and access to Maven Central, or list "
           "pre-downloaded JARs in spark.delta_jars")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise EnvironmentProblem(f"could not resolve {cfg.delta_package}: Ivy failed and Maven (mvn) is not "
                                 f"installed to retry; {fix}.")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "pom.xml").write_text(pom)
        result = subprocess.run(
            [mvn, "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={dest}",
             "-DincludeScope=runtime"],
            cwd=tmp, capture_output=True, text=True, check=False,
        )
    if result.returncode != 0:
        said = (result.stdout + result.stderr).strip()
        log.warning("Maven could not resolve %s:\n%s", cfg.delta_package, said[-2000:])
        last = next((line.strip() for line in reversed(said.splitlines()) if line.strip()), "no output")
        raise EnvironmentProblem(f"could not resolve {cfg.delta_package} with Ivy or Maven (Maven: {last[:300]}); "
                                 f"{fix}.")
    jars = sorted(str(p) for p in dest.glob("*.jar"))
    _write_manifest(cfg, jars)
    return jars


def _launched_by_spark_submit() -> bool:
    return "PYSPARK_GATEWAY_PORT" in os.environ


def submitted_conf() -> dict[str, str]:
    """Settings spark-submit (or an already running context) fixed before this code ran."""
    if _launched_by_spark_submit():
        SparkContext._ensure_initialized()  # attach to the JVM spark-submit started, so SparkConf sees it
    if SparkContext._jvm is None:
        return {}
    return dict(SparkConf().getAll())


def local_mode_conf(master: str) -> dict[str, str]:
    """Defaults for a local master (a setting in the config still wins).

    In local mode the only executor is the driver's own JVM, so the driver's heartbeat expiry can only
    misfire. And it does: Spark 4.2 has a race (SPARK-59451, apache/spark#58785) in which the executor's
    heartbeat thread reads a half-deserialized accumulator, throws and stops; 120 s later the driver
    declares its own executor lost ("Removing executor driver with no recent heartbeats"), which fails
    the tasks running on it. Seen once in a 20-minute benchmark; harmless to switch off locally.
    """
    if not master.startswith("local"):
        return {}
    return {"spark.storage.blockManagerHeartbeatTimeoutMs": "7d"}


def build_session(cfg: SparkConfig, app_name: str | None = None):  # -> SparkSession
    """Create (or reuse) a SparkSession with Delta configured, never overriding what is already set."""
    check_java()

    fixed = submitted_conf()
    wanted: dict[str, str] = {
        "spark.app.name": app_name or cfg.app_name,
        "spark.master": cfg.master or os.environ.get("SPARK_MASTER") or "local[*]",
        **cfg.conf,
    }
    extensions = fixed.get("spark.sql.extensions", "")
    if DELTA_EXTENSION not in extensions:
        wanted["spark.sql.extensions"] = ",".join(e for e in (extensions, DELTA_EXTENSION) if e)
    if "spark.sql.catalog.spark_catalog" not in fixed:
        wanted["spark.sql.catalog.spark_catalog"] = DELTA_CATALOG
    master = fixed.get("spark.master", wanted["spark.master"])
    wanted = {**local_mode_conf(master), **wanted}
    if master.startswith("local"):
        # Local Python workers (mapInPandas: reasons per member) must be this interpreter, with its pandas
        # and numpy, not whatever `python3` is first on PATH; an explicit PYSPARK_PYTHON still wins.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    has_delta_jars = any("delta" in fixed.get(k, "") for k in ("spark.jars", "spark.jars.packages"))
    resolves = not _launched_by_spark_submit() and not has_delta_jars and cached_delta_jars(cfg) is None
    # Two jobs (or two test workers) starting together on a fresh machine would otherwise run Ivy in
    # the same cache at once, which fails or leaves half-written files: the second waits and reuses.
    with _resolution_lock(cfg) if resolves else nullcontext():
        return _build(cfg, fixed, wanted, has_delta_jars)


@contextmanager
def _resolution_lock(cfg: SparkConfig) -> Iterator[None]:
    lock_path = cfg.jars_cache_dir.expanduser() / "resolve.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(cfg: SparkConfig, fixed: dict[str, str], wanted: dict[str, str], has_delta_jars: bool):
    jar_conf: dict[str, str] = {}
    if not _launched_by_spark_submit() and not has_delta_jars:
        jars = cached_delta_jars(cfg)  # read again: a job that held the lock before may have cached them
        if jars:
            jar_conf["spark.jars"] = ",".join(jars)
        else:
            jar_conf["spark.jars.packages"] = ",".join(packages(cfg))
            if cfg.exclude_packages:
                jar_conf["spark.jars.excludes"] = ",".join(cfg.exclude_packages)
            jar_conf["spark.jars.ivy"] = str(cfg.jars_cache_dir.expanduser() / "ivy")

    def create(extra: dict[str, str]):
        builder = SparkSession.builder
        for key, value in {**wanted, **extra}.items():
            if key == "spark.sql.extensions" or key not in fixed:
                builder = builder.config(key, value)
        return builder.getOrCreate()

    try:
        spark = create(jar_conf)
    except PySparkRuntimeError:
        if "spark.jars.packages" not in jar_conf:
            raise
        log.warning("Ivy could not resolve %s; trying Maven", ", ".join(packages(cfg)))
        spark = create({"spark.jars": ",".join(resolve_with_maven(cfg))})

    if "spark.jars.packages" in jar_conf:
        resolved = [j.removeprefix("file://").removeprefix("file:")
                    for j in spark.sparkContext.getConf().get("spark.jars", "").split(",") if j]
        if resolved:
            _write_manifest(cfg, resolved)
            log.info("Delta JARs resolved once and cached in %s", _manifest_path(cfg))
    _check_delta_loaded(spark)
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _check_delta_loaded(spark) -> None:
    try:
        spark.sparkContext._jvm.java.lang.Class.forName(
            DELTA_EXTENSION, True, spark.sparkContext._jvm.java.lang.Thread.currentThread().getContextClassLoader()
        )
    except Exception as exc:
        raise EnvironmentProblem(
            "Delta Lake classes are not on the driver's classpath: under spark-submit pass them with "
            "`$(python -m segments_lib.store.session --submit-args)` or `--packages io.delta:...`; "
            "otherwise check spark.delta_jars."
        ) from exc


def submit_args(cfg: SparkConfig) -> list[str]:
    """`--jars a.jar,b.jar` for spark-submit, resolving (and caching) the JARs first if needed."""
    jars = cached_delta_jars(cfg)
    if jars is None:
        spark = build_session(cfg, app_name="resolve-delta-jars")
        spark.stop()
        jars = cached_delta_jars(cfg)
    if not jars:
        raise EnvironmentProblem(f"could not resolve JARs for {cfg.delta_package} (spark.delta_package)")
    return ["--jars", ",".join(jars), "--conf", f"spark.sql.extensions={DELTA_EXTENSION}",
            "--conf", f"spark.sql.catalog.spark_catalog={DELTA_CATALOG}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Delta-enabled Spark session helpers")
    parser.add_argument("--conf", default=None, help="config overlay (a path, or a name in conf/)")
    parser.add_argument("--submit-args", action="store_true", help="print spark-submit flags for Delta")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.conf).spark
        if args.submit_args:
            print(" ".join(submit_args(cfg)))
            return 0
        spark = build_session(cfg)
    except (ConfigError, EnvironmentProblem) as exc:
        print(f"session: {exc}", file=sys.stderr)
        return 2
    print(f"Spark {spark.version} master={spark.sparkContext.master} delta jars cached: "
          f"{cached_delta_jars(cfg) is not None}")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
