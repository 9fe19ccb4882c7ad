"""Shared trained workspaces that tests may change: snapshot a folder, then put it back in place.

A workspace is restored where it stands rather than copied elsewhere: its MLflow store records
absolute artifact locations, so a copy at another path would still write into the original.
Restoring overwrites files in place (same inodes), so the SQLite store that MLflow keeps open in
this process reads the restored content, and drops Delta's in-process log cache, whose snapshots
would otherwise describe table versions that no longer exist on disk.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyspark.sql import SparkSession


def snapshot(folder: Path, to: Path) -> Path:
    """A byte-for-byte copy of `folder` at `to` (replacing any earlier snapshot there)."""
    if to.exists():
        shutil.rmtree(to)
    shutil.copytree(folder, to)
    return to


def restore(spark: SparkSession, folder: Path, from_snapshot: Path) -> None:
    """Make `folder` equal to `from_snapshot` again: extra files go, every snapshot file is rewritten."""
    kept = {p.relative_to(from_snapshot) for p in from_snapshot.rglob("*")}
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.relative_to(folder) not in kept:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    for source in sorted(from_snapshot.rglob("*")):
        target = folder / source.relative_to(from_snapshot)
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            shutil.copyfile(source, target)  # truncates and rewrites the same inode
    spark.sparkContext._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()


@contextmanager
def restored_afterwards(spark: SparkSession, folder: Path) -> Iterator[None]:
    """Run a block that changes a shared workspace, then put the workspace back as it was."""
    backup = snapshot(folder, folder.with_name(folder.name + ".before-test"))
    try:
        yield
    finally:
        restore(spark, folder, backup)
        shutil.rmtree(backup)
