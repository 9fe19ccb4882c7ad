"""jobs.import_events: the source's days validated into the validated table, idempotently per day.

A tiny hand-built Delta source over 2026-05-01 .. 05-05 (plus one row without a time and one in 2100);
every count below is read off ROWS.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from jobs import import_events
from segments_lib.config import AppConfig
from segments_lib.intake import events as ev
from segments_lib.job.runner import import_days
from segments_lib.store import tables, validated
from tests.conftest import TEST_SPARK_CONF, make_config

RUN_DATE = date(2026, 6, 1)
SCHEMA = "user_id string, event_name string, event_time timestamp, event_value double"
ROWS = [
    ("u1", "Open App", datetime(2026, 5, 1, 10), None),
    ("u1", "Open App", datetime(2026, 5, 1, 10), None),  # exact duplicate: removed, counted
    ("u2", "Purchase Completed", datetime(2026, 5, 2, 12), 10.0),
    (None, "Open App", datetime(2026, 5, 2, 13), None),  # null_user_id
    ("u3", "Purchase Completed", datetime(2026, 5, 3, 9), -5.0),  # negative_value
    ("u3", "Open App", datetime(2026, 5, 4, 23, 59), None),
    ("u4", "Open App", datetime(2026, 5, 5, 0, 0), None),
    ("u5", "Open App", None, None),  # null_event_time: belongs to no day
    ("u6", "Open App", datetime(2100, 1, 1), None),  # future_event
]


REJECTS_0502_0503 = sorted([(None, ev.NULL_USER_ID, RUN_DATE), ("u3", ev.NEGATIVE_VALUE, RUN_DATE)], key=repr)


@pytest.fixture()
def cfg(spark, tmp_path: Path) -> AppConfig:
    config = make_config(tmp_path / "ws", events={"max_rejected_share": 0.7})
    spark.createDataFrame(ROWS, SCHEMA).write.format("delta").save(str(config.events.path))
    return config


def table_rows(spark, path) -> list[tuple]:
    return sorted((tuple(r) for r in spark.read.format("delta").load(str(path)).collect()), key=repr)


def quarantine_reasons(spark, cfg: AppConfig) -> list[tuple]:
    frame = spark.read.format("delta").load(str(cfg.quarantine_path))
    return sorted(((r.user_id, r.reason, r.run_date) for r in frame.collect()), key=repr)


def test_a_day_range_is_validated_and_its_rejects_quarantined_with_counts_per_reason(spark, cfg) -> None:
    summary = import_days(spark, cfg, date(2026, 5, 2), date(2026, 5, 4), RUN_DATE)
    # Days 05-02 and 05-03: u2's purchase, the null user, u3's negative purchase.
    expected = {"total": 3, "valid": 1, ev.NULL_USER_ID: 1, ev.NEGATIVE_VALUE: 1}
    assert {k: summary.counts[k] for k in expected} == expected
    assert sum(summary.counts[r] for r in ev.REASONS) == 2 and summary.counts[ev.DUPLICATES_REMOVED] == 0
    assert [r[0] for r in table_rows(spark, cfg.events.validated_path)] == ["u2"]
    assert quarantine_reasons(spark, cfg) == REJECTS_0502_0503
    profile = validated.read_profile(spark, cfg)
    assert (profile.first_day, profile.newest_day, profile.days) == (date(2026, 5, 2), date(2026, 5, 2), 1)
    assert profile.event_counts == {"Purchase Completed": 1}


def test_importing_the_same_days_twice_gives_the_same_tables(spark, cfg) -> None:
    import_days(spark, cfg, date(2026, 5, 1), date(2026, 5, 6), RUN_DATE)
    first = (table_rows(spark, cfg.events.validated_path), table_rows(spark, validated.profile_location(cfg)),
             quarantine_reasons(spark, cfg))
    version = tables.delta_version(spark, cfg.events.validated_path)
    import_days(spark, cfg, date(2026, 5, 1), date(2026, 5, 6), RUN_DATE)
    again = (table_rows(spark, cfg.events.validated_path), table_rows(spark, validated.profile_location(cfg)),
             quarantine_reasons(spark, cfg))
    assert again == first
    # One more commit, and it replaced exactly the imported days.
    assert tables.delta_version(spark, cfg.events.validated_path) == version + 1
    (commit,) = spark.sql(f"DESCRIBE HISTORY delta.`{cfg.events.validated_path}` LIMIT 1").collect()
    predicate = commit.operationParameters["predicate"]
    assert "2026-05-01" in predicate and "2026-05-06" in predicate, predicate


def test_an_overlapping_range_replaces_rows_and_never_duplicates_them(spark, cfg) -> None:
    import_days(spark, cfg, date(2026, 5, 2), date(2026, 5, 4), RUN_DATE)
    summary = import_days(spark, cfg, date(2026, 5, 1), date(2026, 5, 6), RUN_DATE)
    # 05-01 .. 05-05: 7 rows, one exact duplicate removed, null user and negative value quarantined.
    assert (summary.counts["total"], summary.counts["valid"], summary.counts[ev.DUPLICATES_REMOVED]) == (7, 4, 1)
    rows = table_rows(spark, cfg.events.validated_path)
    assert [(r[0], r[4]) for r in rows] == [("u1", date(2026, 5, 1)), ("u2", date(2026, 5, 2)),
                                            ("u3", date(2026, 5, 4)), ("u4", date(2026, 5, 5))]
    # The quarantine slice holds each reject once, although both imports saw the 05-02 and 05-03 rejects.
    assert quarantine_reasons(spark, cfg) == REJECTS_0502_0503


def test_an_open_range_imports_the_whole_source_in_chunks(spark, cfg) -> None:
    summary = import_days(spark, cfg, None, None, RUN_DATE, chunk_days=100)
    # Source days 05-01 .. 05-05 and 2100-01-01: cut every 100 days from the first source day up to today
    # (a row in 2100 is a future event, read by the open-ended last chunk), the outer bounds left open.
    today = datetime.now(timezone.utc).date()
    assert summary.chunks == len(range(0, (today + timedelta(days=1) - date(2026, 5, 1)).days, 100))
    assert summary.counts["total"] == 9
    assert (summary.counts[ev.NULL_EVENT_TIME], summary.counts[ev.FUTURE_EVENT]) == (1, 1)
    assert summary.counts["valid"] == 4
    assert ("u5", ev.NULL_EVENT_TIME, RUN_DATE) in quarantine_reasons(spark, cfg)


def overlay(tmp_path: Path, cfg: AppConfig) -> Path:
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump({
        "workspace": str(cfg.workspace), "events": {"max_rejected_share": 0.7},
        "spark": {"master": "local[2]", "conf": TEST_SPARK_CONF},
    }))
    return path


def test_the_command_prints_a_summary_with_counts_per_reason(spark, cfg, tmp_path: Path, capsys) -> None:
    code = import_events.main(["--conf", str(overlay(tmp_path, cfg)), "--from", "2026-05-01", "--to", "2026-05-05",
                               "--chunk-days", "3", "--run-date", "2026-06-01"])
    out = capsys.readouterr().out
    assert code == import_events.EXIT_OK, out
    assert "Imported 2026-05-01 .. 2026-05-05 in 2 chunk(s)" in out
    assert "rows read       7" in out and "valid           4" in out and "duplicates      1 removed" in out
    assert "null_user_id    1" in out and "negative_value  1" in out
    assert "4 days from 2026-05-01 to 2026-05-05, 4 events" in out


def test_help_lists_the_flags_and_exit_codes(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        import_events.main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    for flag in ("--conf", "--from", "--to", "--chunk-days", "--run-date"):
        assert flag in out
    assert "exit codes:" in out and "  0  " in out and "  1  " in out and "  2  " in out


def test_a_missing_source_or_too_many_rejects_exit_2(spark, tmp_path: Path, caplog) -> None:
    empty = make_config(tmp_path / "nothing")
    assert import_events.main(["--conf", str(overlay(tmp_path, empty))]) == import_events.EXIT_INVALID
    assert "events table not found" in caplog.text
    strict = make_config(tmp_path / "strict")
    spark.createDataFrame(ROWS, SCHEMA).write.format("delta").save(str(strict.events.path))
    path = tmp_path / "strict.yaml"
    path.write_text(yaml.safe_dump({"workspace": str(strict.workspace),
                                    "spark": {"master": "local[2]", "conf": TEST_SPARK_CONF}}))
    assert import_events.main(["--conf", str(path), "--from", "2026-05-01", "--to", "2026-05-05"]) == 2
    assert "2 of 7 events rejected" in caplog.text
    assert not tables.is_delta_table(spark, strict.events.validated_path)


PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_an_import_killed_between_chunks_is_finished_by_running_it_again(spark, cfg, tmp_path: Path) -> None:
    """SIGKILL the import the moment its second chunk starts; the first chunk is whole, and the same
    command run again gives the tables a clean import gives."""
    command = [sys.executable, "-m", "jobs.import_events", "--conf", str(overlay(tmp_path, cfg)),
               "--from", "2026-05-01", "--to", "2026-05-05", "--chunk-days", "2", "--run-date", "2026-06-01"]
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, "PYSPARK_PYTHON": sys.executable}
    job = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True)
    seen = []
    for line in job.stderr:
        seen.append(line)
        if "▶ import 2026-05-03 .. 2026-05-04 (2/3)" in line:
            os.killpg(job.pid, signal.SIGKILL)
            break
    job.wait(timeout=120)
    assert job.returncode == -signal.SIGKILL, "".join(seen[-30:])
    spark.sparkContext._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
    assert {r[4] for r in table_rows(spark, cfg.events.validated_path)} == {date(2026, 5, 1), date(2026, 5, 2)}

    # The same command again (in this process: the shared session saves a second JVM start).
    assert import_events.main(command[3:]) == import_events.EXIT_OK
    clean = make_config(tmp_path / "clean", events={"max_rejected_share": 0.7})
    spark.createDataFrame(ROWS, SCHEMA).write.format("delta").save(str(clean.events.path))
    import_days(spark, clean, date(2026, 5, 1), date(2026, 5, 6), RUN_DATE, chunk_days=2)
    for table in (lambda c: c.events.validated_path, validated.profile_location):
        assert table_rows(spark, table(cfg)) == table_rows(spark, table(clean))
    assert quarantine_reasons(spark, cfg) == quarantine_reasons(spark, clean)
