"""Storage checks on any location, through Hadoop's FileSystem in the Spark JVM.

The same call works for a local path, `file://`, `s3a://`, `abfss://`, `gs://` and `hdfs://`: Spark
already carries the connector and its credentials (`spark.hadoop.fs.*` settings, the environment), so
the checks see exactly what the Delta reads and writes will see. A failure is a `StorageError` that
names the location and the config key to fix, never a Java stack trace.
"""

from __future__ import annotations

import os

from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

from segments_lib.locations import Location


class StorageError(RuntimeError):
    """A location cannot be reached, read or written; the message names it and the setting."""


def _java_reason(exc: Exception) -> str:
    """The first line of the Java exception, without the stack trace (and never a credential: Hadoop's
    messages name the bucket and the failing call, not the keys)."""
    text = str(exc.java_exception.toString()) if isinstance(exc, Py4JJavaError) else str(exc)
    return text.strip().splitlines()[0][:400] if text.strip() else type(exc).__name__


def _hadoop(spark: SparkSession, location: Location):  # -> (org.apache.hadoop.fs.FileSystem, Path)
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(str(location) if not location.is_local else location.path.as_uri())
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def exists(spark: SparkSession, location: Location, setting: str) -> bool:
    """Whether anything is at `location`; an unreachable or unauthorised store is a StorageError."""
    if location.is_local:
        return location.path.exists()
    try:
        filesystem, path = _hadoop(spark, location)
        return bool(filesystem.exists(path))
    except Py4JJavaError as exc:
        raise StorageError(f"cannot reach {location} ({setting} in config): {_java_reason(exc)}") from exc


def is_directory(spark: SparkSession, location: Location, setting: str) -> bool:
    if location.is_local:
        return location.path.is_dir()
    try:
        filesystem, path = _hadoop(spark, location)
        return bool(filesystem.exists(path) and filesystem.getFileStatus(path).isDirectory())
    except Py4JJavaError as exc:
        raise StorageError(f"cannot reach {location} ({setting} in config): {_java_reason(exc)}") from exc


def ensure_writable_directory(spark: SparkSession, location: Location, setting: str) -> None:
    """Create the directory if missing and prove it writable (a probe file written and deleted).

    On the local disk this is mkdir and the permission bits; on an object store the probe is the only
    honest test, since a bucket policy may allow listing and refuse writes.
    """
    if location.is_local:
        try:
            location.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"location {location} ({setting} in config) cannot be created: {exc}") from exc
        if not os.access(location.path, os.W_OK | os.X_OK):
            raise StorageError(f"location {location} ({setting} in config) is not writable by this user")
        return
    probe = location / f"_segments_write_probe_{os.getpid()}"
    try:
        filesystem, path = _hadoop(spark, probe)
        filesystem.mkdirs(path.getParent())
        filesystem.create(path, True).close()
        filesystem.delete(path, False)
    except Py4JJavaError as exc:
        raise StorageError(f"location {location} ({setting} in config) is not writable: {_java_reason(exc)}") from exc


def list_names(spark: SparkSession, location: Location, setting: str) -> list[str]:
    """The names of the entries of a directory ([] when it does not exist); unreachable: StorageError."""
    if location.is_local:
        return sorted(os.listdir(location.path)) if location.path.is_dir() else []
    try:
        filesystem, path = _hadoop(spark, location)
        if not filesystem.exists(path):
            return []
        return sorted(str(status.getPath().getName()) for status in filesystem.listStatus(path))
    except Py4JJavaError as exc:
        raise StorageError(f"cannot list {location} ({setting} in config): {_java_reason(exc)}") from exc


def read_bytes(spark: SparkSession, location: Location, setting: str) -> bytes:
    """A small file's bytes, as stored (no checksum check on the local disk: a damaged file is what the
    caller is looking for). Unreachable or unreadable: StorageError."""
    if location.is_local:
        try:
            return location.path.read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read {location} ({setting} in config): {exc}") from exc
    try:
        filesystem, path = _hadoop(spark, location)
        stream = filesystem.open(path)
        try:
            return bytes(spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()
    except Py4JJavaError as exc:
        raise StorageError(f"cannot read {location} ({setting} in config): {_java_reason(exc)}") from exc
