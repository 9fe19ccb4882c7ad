"""Export one night's members of a segment (or what changed since the night before) as ONE file for a campaign tool.

    python -m jobs.export --segment likely_to_purchase --level medium --date 2026-06-01 \\
        --format csv --to /tmp/exports/likely_to_purchase.csv
    python -m jobs.export --segment churn_risk --date 2026-06-01 --changes \\
        --format parquet --to s3a://campaigns/churn_risk/changes.parquet

Reads segment_membership under the configured output location. Members are the users whose flag at
--level is set on run date --date (`member_high` / `member_medium` / `member_low`, or `is_member` for
`configured`, the segment's own level), control-group users left out unless --include-control, ordered
by score (highest first). The columns: user_id, segment, run_date, score, precision_tier,
control_group (and reason_1..reason_3 where the table has them).

--changes writes user_id, segment, run_date, change instead: `entered` for a member on --date who was
not one on the segment's previous run date in the table, `left` for the reverse. Both nights' lists
leave the control group out by the same rule, so the changes turn one night's export into the next.
With no earlier night, every member has entered.

--to is one file, on the local disk or any Hadoop URI (s3a://, abfss://, gs://, hdfs://); a rerun
replaces it with the same content.
"""

from __future__ import annotations

import argparse
import logging
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

if __package__ in (None, ""):  # spark-submit runs this file as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.options import EXIT_FAILED, EXIT_INVALID, EXIT_OK, iso_date, job_parser
from segments_lib.config import ConfigError, load_config, suggest
from segments_lib.language.definitions import NAMED_LEVELS
from segments_lib.locations import Location, LocationError
from segments_lib.progress import configure_logging

log = logging.getLogger("jobs.export")

CONFIGURED = "configured"
LEVELS = (*NAMED_LEVELS, CONFIGURED)
FORMATS = ("csv", "parquet")
MEMBER_COLUMNS = ("user_id", "segment", "run_date", "score", "precision_tier", "control_group")
REASON_COLUMNS = ("reason_1", "reason_2", "reason_3")
CHANGE_COLUMNS = ("user_id", "segment", "run_date", "change")
NEWEST_DATES_SHOWN = 5


class ExportError(ValueError):
    """The export cannot run with these arguments; the message says what to change."""


@dataclass(frozen=True)
class Export:
    rows: DataFrame
    count: int
    control_left_out: int
    noun: str  # "members" or "changes", for the summary line
    detail: str = ""  # what the changes were, for the summary line


def level_column(level: str) -> str:
    """The membership column of a --level: member_<level> for a named level, is_member for 'configured'."""
    if level == CONFIGURED:
        return "is_member"
    if level in NAMED_LEVELS:
        return f"member_{level}"
    raise ExportError(f"unknown --level '{level}'{suggest(level, LEVELS)}; use one of {', '.join(LEVELS)}")


def output_format(name: str | None, target: Location) -> str:
    """--format, or the target's extension when it is left out."""
    extension = target.name.rsplit(".", 1)[-1].lower() if "." in target.name else ""
    chosen = name if name is not None else extension
    if chosen not in FORMATS:
        given = f"--format '{name}'" if name is not None else f"no --format, and --to {target} ends in neither"
        raise ExportError(f"unknown {given}{suggest(name or '', FORMATS)}; use one of {', '.join(FORMATS)}")
    return chosen


def run_dates(membership: DataFrame, segment: str) -> list[date]:
    """The segment's run dates in the table, oldest first (a partition-only read)."""
    rows = membership.where(F.col("segment") == segment).select("run_date").distinct().collect()
    return sorted(r.run_date for r in rows)


def check_slice(membership: DataFrame, segment: str, run_date: date) -> date | None:
    """The segment's run date before `run_date` (None on its first night); an unknown segment or a date the
    table lacks is an ExportError listing what is there."""
    dates = run_dates(membership, segment)
    if not dates:
        known = sorted(r.segment for r in membership.select("segment").distinct().collect())
        listed = ", ".join(known) if known else "none: the table is empty"
        raise ExportError(f"segment '{segment}' has no rows in segment_membership{suggest(segment, known)}; "
                          f"segments there: {listed}")
    if run_date not in dates:
        newest = ", ".join(d.isoformat() for d in reversed(dates[-NEWEST_DATES_SHOWN:]))
        raise ExportError(f"segment '{segment}' has no rows for {run_date}; its newest run dates: {newest}")
    earlier = [d for d in dates if d < run_date]
    return earlier[-1] if earlier else None


def is_true(name: str) -> Column:
    """A flag that counts only when set: a null flag (a level not configured on that night) is not a member."""
    return F.coalesce(F.col(name), F.lit(False))


def night(membership: DataFrame, segment: str, run_date: date, column: str) -> DataFrame:
    """The members of one (segment, run date) slice at one level, control group included."""
    return membership.where((F.col("segment") == segment) & (F.col("run_date") == run_date) & is_true(column))


def control_split(members: DataFrame) -> tuple[int, int]:
    """(members outside the control group, members in it), in one pass."""
    counts = {r.control: r["count"] for r in members.groupBy(is_true("control_group").alias("control")).count()
              .collect()}
    return counts.get(False, 0), counts.get(True, 0)


def members_export(membership: DataFrame, segment: str, run_date: date, column: str,
                   include_control: bool) -> Export:
    members = night(membership, segment, run_date, column)
    targeted, control = control_split(members)
    if not include_control:
        members = members.where(~is_true("control_group"))
    columns = [*MEMBER_COLUMNS, *(c for c in REASON_COLUMNS if c in membership.columns)]
    # user_id breaks score ties, so a rerun writes the rows in the same order, byte for byte.
    rows = members.select(*columns).coalesce(1).sortWithinPartitions(F.col("score").desc(), F.col("user_id"))
    if include_control:
        return Export(rows, targeted + control, 0, "members")
    return Export(rows, targeted, control, "members")


def changes_export(membership: DataFrame, segment: str, run_date: date, previous: date | None, column: str,
                   include_control: bool) -> Export:
    tonight = night(membership, segment, run_date, column)
    control = 0 if include_control else control_split(tonight)[1]

    def audience(members: DataFrame) -> DataFrame:
        kept = members if include_control else members.where(~is_true("control_group"))
        return kept.select("user_id")

    today = audience(tonight)
    if previous is None:
        log.info("segment '%s' has no run date before %s in segment_membership: every member is 'entered'",
                 segment, run_date)
        changes = today.withColumn("change", F.lit("entered"))
    else:
        before = audience(night(membership, segment, previous, column))
        changes = (today.join(before, "user_id", "left_anti").withColumn("change", F.lit("entered"))
                   .unionByName(before.join(today, "user_id", "left_anti").withColumn("change", F.lit("left"))))
    rows = (changes.select("user_id", F.lit(segment).alias("segment"), F.lit(run_date).alias("run_date"), "change")
            .coalesce(1).sortWithinPartitions("change", "user_id"))
    counts = {r.change: r["count"] for r in changes.groupBy("change").count().collect()}
    since = f"since {previous}" if previous is not None else "no earlier night"
    detail = f"; {counts.get('entered', 0)} entered, {counts.get('left', 0)} left, {since}"
    return Export(rows, sum(counts.values()), control, "changes", detail)


def _hadoop(spark: SparkSession, location: Location):  # -> (org.apache.hadoop.fs.FileSystem, Path)
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(location.path.as_uri() if location.is_local else str(location))
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def _without_checksums(spark: SparkSession, filesystem):  # -> org.apache.hadoop.fs.FileSystem
    """The local disk's raw file system: a rename through the checksummed one would carry Spark's hidden
    `.crc` file along and leave it next to the export."""
    checksummed = spark.sparkContext._jvm.java.lang.Class.forName("org.apache.hadoop.fs.ChecksumFileSystem")
    return filesystem.getRawFileSystem() if checksummed.isInstance(filesystem) else filesystem


def write_single_file(rows: DataFrame, fmt: str, target: Location) -> None:
    """Write `rows` (one partition) to exactly the file `target`, replacing it.

    Spark writes a directory of part files, so the rows go to a temporary directory beside the target
    (same file system, so the move is a rename, not a copy across stores) and the one part file is
    moved onto the target's name through Hadoop's FileSystem, which works for every Hadoop URI.
    """
    spark = rows.sparkSession
    staging = target.parent / f"_{target.name}.export-{uuid.uuid4().hex[:12]}"
    filesystem, target_path = _hadoop(spark, target)
    if filesystem.exists(target_path) and filesystem.getFileStatus(target_path).isDirectory():
        raise ExportError(f"--to {target} is a directory; name the file to write, e.g. {target / f'members.{fmt}'}")
    staging_fs, staging_path = _hadoop(spark, staging)
    try:
        writer = rows.write.mode("overwrite")
        if fmt == "csv":
            writer.option("header", "true").csv(str(staging))
        else:
            writer.parquet(str(staging))
        parts = [s.getPath() for s in staging_fs.listStatus(staging_path)
                 if s.isFile() and s.getPath().getName().startswith("part-")]
        if len(parts) != 1:
            raise RuntimeError(f"expected one part file in {staging}, found {len(parts)}")
        if filesystem.exists(target_path):
            filesystem.delete(target_path, False)  # the checksummed file system removes its .crc too
        if not _without_checksums(spark, staging_fs).rename(parts[0], target_path):
            raise RuntimeError(f"could not move {parts[0]} to {target}")
    finally:
        staging_fs.delete(staging_path, True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = job_parser(__doc__, "jobs.export", {
        EXIT_OK: "the file is written",
        EXIT_FAILED: "reading the table or writing the file failed (one line says where)",
        EXIT_INVALID: "bad arguments or config: an unknown segment, level or format, a date the table does not "
                      "hold, no membership table; or the environment (no Java, JARs that cannot be resolved). "
                      "One line names what to change",
    })
    parser.add_argument("--segment", required=True, help="segment name, as in segment_membership")
    parser.add_argument("--level", default=CONFIGURED,
                        help=f"precision level: {', '.join(NAMED_LEVELS)}, or {CONFIGURED} (the segment's own "
                        f"level, column is_member; default)")
    parser.add_argument("--date", type=iso_date, required=True, help="run date D, YYYY-MM-DD")
    parser.add_argument("--format", default=None,
                        help=f"{' or '.join(FORMATS)} (default: the extension of --to)")
    parser.add_argument("--to", required=True, metavar="URI",
                        help="the file to write: a local path or a Hadoop URI (s3a://, abfss://, gs://, hdfs://)")
    parser.add_argument("--changes", action="store_true",
                        help="write who entered and who left since the segment's previous run date, not the members")
    parser.add_argument("--include-control", action="store_true",
                        help="keep control-group users (left out by default: they must not be targeted)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()

    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    from segments_lib.store import tables
    from segments_lib.store.session import EnvironmentProblem, build_session

    target = args.to
    try:
        column = level_column(args.level)
        target = Location.parse(args.to)
        fmt = output_format(args.format, target)
        cfg = load_config(args.conf)
        spark = build_session(cfg.spark, app_name="export")
        membership = tables.read_output(spark, cfg, tables.SEGMENT_MEMBERSHIP)
        if membership is None:
            raise ExportError(f"no segment_membership table at {tables.output_path(cfg, tables.SEGMENT_MEMBERSHIP)}: "
                              "no night has run with this config (check --conf and output.root)")
        previous = check_slice(membership, args.segment, args.date)
        if args.changes:
            export = changes_export(membership, args.segment, args.date, previous, column, args.include_control)
        else:
            export = members_export(membership, args.segment, args.date, column, args.include_control)
        write_single_file(export.rows, fmt, target)
    except (ExportError, ConfigError, LocationError, EnvironmentProblem, tables.TableError) as exc:
        print(f"export: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except (Py4JJavaError, PySparkException, RuntimeError, OSError) as exc:
        # Storage and Spark failures: the first line of the Java exception names the path and the call,
        # the stack trace would bury it.
        reason = (str(exc.java_exception.toString()) if isinstance(exc, Py4JJavaError) else str(exc)).strip()
        print(f"export: exporting to {target} failed: "
              f"{reason.splitlines()[0][:400] if reason else type(exc).__name__}", file=sys.stderr)
        return EXIT_FAILED

    left_out = ("control-group users included" if args.include_control
                else f"{export.control_left_out} control-group users left out")
    print(f"wrote {export.count} {export.noun} of {args.segment} (level {args.level}, {args.date}{export.detail}) "
          f"to {target}; {left_out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
