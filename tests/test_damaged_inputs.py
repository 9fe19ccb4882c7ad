"""Damaged inputs (issue 23, item 5): a truncated source file, a damaged Delta log, an events path that
is a file, a run date in the future. Each stops the job with one line naming the file, path or date
(exit 2), before anything is written; none is skipped silently (`spark.sql.files.ignoreCorruptFiles`
stays off).

The job cases drive `run_job` in-process on a few hundred events; they stop in the events stage, so
nothing trains. The damage is done the way a crashed copy or a half-finished upload does it: bytes cut
off the end of the file, or the file replaced. On the local disk Hadoop keeps a checksum beside each
file it wrote (`.name.crc`); an upstream writer on an object store or HDFS leaves none, so the tests
delete it unless they test it.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F

from jobs import nightly
from segments_lib.config import AppConfig
from segments_lib.job.runner import JobError, import_days, run_job
from tests.conftest import make_config

RUN_DATE = date(2026, 6, 1)
T = datetime(2026, 6, 1)
SCHEMA = "user_id string, event_name string, event_time timestamp, event_value double"
SEGMENTS = """
segments:
  - name: likely_to_purchase
    kind: conversion
    target: {occurs: {events: [Purchase Completed]}}
    past_window: 7d
    prediction_window: 7d
"""
LOG = "_delta_log"


def job_config(tmp_path: Path, fmt: str = "delta") -> AppConfig:
    segments_file = tmp_path / "segments.yaml"
    segments_file.write_text(SEGMENTS)
    return make_config(tmp_path / "ws", segments_file=str(segments_file), events={"format": fmt})


def events(spark, n: int = 300, hours_before: int = 0):
    """`n` events ten minutes apart ending `hours_before` hours before T, 40 users; a few event_date days
    (every day is a partition of its own, and a Delta write per partition is what costs time here)."""
    rows = [(f"u{i % 40}", "Purchase Completed" if i % 3 == 0 else "Open App",
             T - timedelta(minutes=10 * (i + 1)) - timedelta(hours=hours_before), 12.5 if i % 3 == 0 else None)
            for i in range(n)]
    return spark.createDataFrame(rows, SCHEMA).withColumn("event_date", F.to_date("event_time"))


def truncate(file: Path, keep_checksum: bool = False) -> Path:
    """Cut the file to half its bytes, as an interrupted copy leaves it."""
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    if not keep_checksum:
        (file.parent / f".{file.name}.crc").unlink(missing_ok=True)
    return file


def stops_with(cfg: AppConfig, caplog, *fragments: str) -> None:
    """The night exits 2 with one error line holding every fragment, no traceback, and writes neither
    membership nor validated events."""
    with caplog.at_level(logging.INFO):
        assert run_job(cfg, [RUN_DATE], None, "auto") == 2
    line = error_line(caplog)
    assert all(fragment in line for fragment in fragments), line
    assert "Traceback" not in caplog.text
    assert not (cfg.output.root.path / "segment_membership").exists()
    assert not cfg.events.validated_path.path.exists()


def error_line(caplog) -> str:
    """The one error the job logged."""
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    return line


def write_parquet(spark, cfg: AppConfig) -> list[Path]:
    """Three plain Parquet files (as an upstream export writes them), oldest name first."""
    events(spark).repartition(3).write.parquet(str(cfg.events.path))
    return sorted(cfg.events.path.path.glob("part-*.parquet"))


def write_delta(spark, cfg: AppConfig, commits: int = 2) -> Path:
    """A Delta events table of `commits` appends of 150 events each; its _delta_log folder."""
    for i in range(commits):
        events(spark, 150, hours_before=25 * i).write.format("delta").mode("append").partitionBy(
            "event_date").save(str(cfg.events.path))
    return cfg.events.path.path / LOG


def log_file(log_dir: Path, version: int, suffix: str = "json") -> Path:
    return log_dir / f"{version:020d}.{suffix}"


# --- a. a truncated data file ------------------------------------------------------------------------

PARQUET_REMEDY = ("Put back an intact copy (or move it out of the folder, if its events may be lost); the job "
                  "stopped before writing the days it was reading, and no file is skipped silently.")


@pytest.mark.parametrize(("victim", "keep_checksum"), [(0, False), (-1, False), (-1, True)],
                         ids=["first-file-read-for-the-schema", "a-later-file-read-by-the-count",
                              "local-checksum-left-beside-it"])
def test_a_truncated_parquet_file_stops_the_night_naming_the_file(spark, tmp_path: Path, caplog, victim: int,
                                                                   keep_checksum: bool) -> None:
    cfg = job_config(tmp_path, "parquet")
    damaged = truncate(write_parquet(spark, cfg)[victim], keep_checksum)
    stops_with(cfg, caplog, f"events file {damaged} (under events.path {cfg.events.path} in config, format "
                            "parquet) cannot be read, it is damaged or truncated: ")
    line = error_line(caplog)
    assert line.endswith(PARQUET_REMEDY), line
    # The reader's own reason is kept: a checksum that no longer matches, or a cut-off footer.
    assert ("ChecksumException" in line) if keep_checksum else ("Parquet" in line or "footer" in line), line


def test_a_chunked_import_of_a_truncated_parquet_source_names_the_file(spark, tmp_path: Path) -> None:
    cfg = job_config(tmp_path, "parquet")
    damaged = truncate(write_parquet(spark, cfg)[-1])
    # Finding the chunks' days is the first read of every row (a min/max): the damage shows there.
    with pytest.raises(JobError, match=f"^events file {damaged} \\(under events.path "):
        import_days(spark, cfg, None, None, RUN_DATE, chunk_days=2)
    assert not cfg.events.validated_path.path.exists()


def test_a_truncated_data_file_of_a_delta_events_table_stops_the_night_naming_the_file(spark, tmp_path: Path,
                                                                                        caplog) -> None:
    cfg = job_config(tmp_path)
    write_delta(spark, cfg)
    damaged = truncate(sorted(cfg.events.path.path.rglob("part-*.parquet"))[-1])
    stops_with(cfg, caplog, f"events file {damaged} (under events.path {cfg.events.path} in config, format delta) "
                            "cannot be read, it is damaged or truncated: ")
    assert error_line(caplog).endswith(
        "Put back an intact copy (or restore the table to a version before the file was added); the job stopped "
        "before writing the days it was reading, and no file is skipped silently.")


def test_a_data_file_gone_from_a_delta_events_table_stops_the_night_naming_it(spark, tmp_path: Path,
                                                                              caplog) -> None:
    cfg = job_config(tmp_path)
    write_delta(spark, cfg)
    gone = sorted(cfg.events.path.path.rglob("part-*.parquet"))[0]
    gone.unlink()
    (gone.parent / f".{gone.name}.crc").unlink()
    stops_with(cfg, caplog, f"events file {gone} (under events.path {cfg.events.path} in config, format delta) is "
                            "missing: the table lists it but it is gone. Put it back, or restore the table to a "
                            "version without it; the job stopped before writing the days it was reading.")


# --- b. a damaged Delta log --------------------------------------------------------------------------


def garbage(file: Path) -> None:
    file.write_bytes(b"\x00\x01 this is not a commit \xff")


def cut_mid_line(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) * 2 // 3])


def emptied(file: Path) -> None:
    file.write_bytes(b"")


@pytest.mark.parametrize(("damage", "problem"), [
    (garbage, "is not valid JSON (line 1, column 1: Expecting value)"),
    (cut_mid_line, "is not valid JSON (line "),
    (emptied, "is empty"),
], ids=["garbage", "truncated", "empty"])
def test_a_damaged_newest_log_entry_stops_the_night_naming_it(spark, tmp_path: Path, caplog, damage,
                                                              problem: str) -> None:
    cfg = job_config(tmp_path)
    newest = log_file(write_delta(spark, cfg), 1)
    damage(newest)
    (newest.parent / f".{newest.name}.crc").unlink()
    stops_with(cfg, caplog, f"events table at {cfg.events.path} (events.path in config) has a damaged Delta log: "
                            f"its newest entry {newest} {problem}")
    assert error_line(caplog).endswith(", as a truncated or overwritten file is; Delta would fail on it or lose the "
                                       "events it adds. Put back an intact copy of the file; nothing was read or "
                                       "written.")


def test_a_missing_newest_log_entry_stops_the_night_instead_of_reading_the_version_before(spark, tmp_path: Path,
                                                                                           caplog) -> None:
    cfg = job_config(tmp_path)
    log_dir = write_delta(spark, cfg)
    newest = log_file(log_dir, 1)
    newest.unlink()
    (log_dir / f".{newest.name}.crc").unlink()
    # Without the check Delta reads version 0, the first 150 events, and says nothing.
    stops_with(cfg, caplog, f"events table at {cfg.events.path} (events.path in config) has a damaged Delta log: "
                            f"its newest entry {newest} is missing, but other files of version 1 are there "
                            f"({log_file(log_dir, 1, 'crc').name}); Delta would read version 0 and silently lose "
                            "the events of the versions after it. Put back an intact copy of the file; nothing was "
                            "read or written.")


@pytest.mark.parametrize("damage", [garbage, cut_mid_line], ids=["garbage", "truncated"])
def test_a_damaged_older_log_entry_stops_the_night_naming_it(spark, tmp_path: Path, caplog, damage) -> None:
    cfg = job_config(tmp_path)
    older = log_file(write_delta(spark, cfg, commits=3), 1)
    damage(older)
    (older.parent / f".{older.name}.crc").unlink()
    # Delta replays it with Spark's JSON reader in FAILFAST mode: Spark names the file, the job keeps the name.
    stops_with(cfg, caplog, f"events table at {cfg.events.path} (events.path in config) has a damaged Delta log: "
                            f"{older} cannot be read (com.fasterxml.jackson.")
    assert error_line(caplog).endswith("Put back an intact copy of it; the job stopped before writing the days it "
                                       "was reading.")


# --- c. an events path that is a file ------------------------------------------------------------------


def test_an_events_path_that_is_a_file_is_refused_as_a_delta_table_naming_the_path(spark, tmp_path: Path,
                                                                                   caplog) -> None:
    cfg = job_config(tmp_path)
    cfg.events.path.path.parent.mkdir(parents=True)
    cfg.events.path.path.write_text("user_id,event_name\nu1,Open App\n")
    stops_with(cfg, caplog, f"no Delta table at {cfg.events.path} (events.path in config): it is a file, and a "
                            "Delta table is a folder holding a _delta_log folder. Point events.path at the table's "
                            "folder, or set events.format to the file's format (parquet, csv, json).")


def test_an_events_path_that_is_a_file_but_not_parquet_names_it(spark, tmp_path: Path, caplog) -> None:
    cfg = job_config(tmp_path, "parquet")
    cfg.events.path.path.parent.mkdir(parents=True)
    cfg.events.path.path.write_text("user_id,event_name\nu1,Open App\n")
    stops_with(cfg, caplog, f"events file {cfg.events.path} (events.path {cfg.events.path} in config, format "
                            "parquet) cannot be read, it is damaged or truncated: ", "is not a Parquet file")


# --- d. a run date in the future -----------------------------------------------------------------------

TODAY = date(2026, 12, 2)


@pytest.mark.parametrize(("argv", "refusal"), [
    (["--date", "2026-12-03"], "--date 2026-12-03 is in the future: today is 2026-12-02 (UTC)"),
    (["--from", "2026-11-30", "--to", "2027-01-01"], "--to 2027-01-01 is in the future: today is 2026-12-02 (UTC)"),
], ids=["date", "backfill-ending-later"])
def test_a_run_date_after_today_is_refused_with_exit_2_naming_both_dates(argv: list[str], refusal: str,
                                                                         capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        nightly.parse_args(argv, today=TODAY)
    assert exited.value.code == 2
    assert (f"jobs.nightly: error: {refusal}, and a night can run only once its date has come; give a date up to "
            "today") in capsys.readouterr().err


def test_today_and_earlier_dates_are_accepted() -> None:
    assert nightly.run_dates(nightly.parse_args(["--date", "2026-12-02"], today=TODAY)) == [TODAY]
    assert nightly.parse_args(["--from", "2026-11-30", "--to", "2026-12-02"], today=TODAY).date_to == TODAY


def test_the_job_refuses_tomorrow_before_touching_the_workspace(tmp_path: Path, capsys) -> None:
    workspace = tmp_path / "ws"
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"workspace": str(workspace)}))
    today = datetime.now(timezone.utc).date()
    later = today + timedelta(days=2)
    with pytest.raises(SystemExit) as exited:
        nightly.main(["--conf", str(overlay), "--date", later.isoformat()])
    assert exited.value.code == 2
    assert f"--date {later} is in the future: today is {today} (UTC)" in capsys.readouterr().err
    assert not workspace.exists()
