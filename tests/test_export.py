"""Exports for campaign tools (issue 21 item 3): one file of a night's members or changes, and the
membership table's Change Data Feed.

The membership table is built by hand through `tables.write_output` (the nightly job's own write), two
nights of segment `buyers` and one of `churners`; every expected user list below is worked out from
these rows. Levels: high ≥ 0.8, medium ≥ 0.6, low ≥ 0.4; `buyers` is configured at low, so `is_member`
is score ≥ 0.4. Control group: u03 and u07 on both nights, u12 on the first night only.

    user  2026-05-31        2026-06-01
    u01   0.95              0.90
    u02   0.85              0.55
    u03   0.82 control      0.88 control
    u04   0.70              0.75
    u05   0.65              0.66
    u06   0.50              0.61
    u07   0.62 control      0.30 control
    u08   0.30              -
    u09   -                 0.72
    u10   -                 0.20
    u11   -                 0.61
    u12   0.70 control      0.70

Medium on 2026-06-01, control left out, by score (u06 and u11 tie at 0.61; user_id breaks the tie):
u01, u04, u09, u12, u05, u06, u11 (u03 left out). Medium on 2026-05-31 without control: u01, u02, u04,
u05. So since then u06, u09, u11, u12 entered and u02 left.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs import export
from segments_lib.config import AppConfig
from segments_lib.job.scoring import MEMBERSHIP_SCHEMA
from segments_lib.store import tables
from tests.conftest import make_config

MAY_31, JUNE_1 = date(2026, 5, 31), date(2026, 6, 1)
LEVELS = {"high": 0.8, "medium": 0.6, "low": 0.4}
CONFIGURED_LEVEL = "low"

# (user, score, control_group) per night of `buyers`
NIGHTS = {
    MAY_31: [("u01", 0.95, False), ("u02", 0.85, False), ("u03", 0.82, True), ("u04", 0.70, False),
             ("u05", 0.65, False), ("u06", 0.50, False), ("u07", 0.62, True), ("u08", 0.30, False),
             ("u12", 0.70, True)],
    JUNE_1: [("u01", 0.90, False), ("u02", 0.55, False), ("u03", 0.88, True), ("u04", 0.75, False),
             ("u05", 0.66, False), ("u06", 0.61, False), ("u07", 0.30, True), ("u09", 0.72, False),
             ("u10", 0.20, False), ("u11", 0.61, False), ("u12", 0.70, False)],
}
CHURNERS = [("c1", 0.9, False), ("c2", 0.1, False)]

MEDIUM_JUNE_1 = ["u01", "u04", "u09", "u12", "u05", "u06", "u11"]


def membership(spark: SparkSession, segment: str, run_date: date, users: list[tuple[str, float, bool]]) -> DataFrame:
    """Rows in the nightly job's schema; flags from LEVELS, the way scoring sets them."""
    def tier(score: float) -> str | None:
        return next((name for name, cut in LEVELS.items() if score >= cut), None)

    rows = [
        (run_date, segment, user, score, tier(score), score >= LEVELS["high"], score >= LEVELS["medium"],
         score >= LEVELS["low"], score >= LEVELS[CONFIGURED_LEVEL], LEVELS[CONFIGURED_LEVEL],
         f"segments_{segment}", 1, "run-1", control, None, None, None)
        for user, score, control in users
    ]
    return spark.createDataFrame(rows, MEMBERSHIP_SCHEMA)


def write_night(spark: SparkSession, cfg: AppConfig, segment: str, run_date: date, users) -> None:
    tables.write_output(membership(spark, segment, run_date, users), cfg, tables.SEGMENT_MEMBERSHIP,
                        {"segment": segment, "run_date": run_date}, partition_by=("segment", "run_date"))


@pytest.fixture(scope="module")
def workspace(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> AppConfig:
    """Three nights written one commit each (versions 0, 1, 2)."""
    cfg = make_config(tmp_path_factory.mktemp("export_ws"))
    write_night(spark, cfg, "buyers", MAY_31, NIGHTS[MAY_31])
    write_night(spark, cfg, "buyers", JUNE_1, NIGHTS[JUNE_1])
    write_night(spark, cfg, "churners", JUNE_1, CHURNERS)
    return cfg


@pytest.fixture()
def job(workspace: AppConfig, monkeypatch: pytest.MonkeyPatch) -> AppConfig:
    """The job (no --conf) finds the workspace through SEGMENTS_WORKSPACE. Per test: the variable wins over
    any configured workspace, so set for the module it would also move the tests' own configs."""
    monkeypatch.setenv("SEGMENTS_WORKSPACE", str(workspace.workspace.path))
    return workspace


def run(target: Path, *flags: str, segment: str = "buyers", run_date: date = JUNE_1) -> int:
    return export.main(["--segment", segment, "--date", run_date.isoformat(), "--to", str(target), *flags])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def only_file(folder: Path) -> Path:
    """The export is the folder's one entry: no part files, staging folders or .crc files are left."""
    entries = sorted(p.name for p in folder.iterdir())
    assert len(entries) == 1, entries
    return folder / entries[0]


def test_members_at_a_level_without_the_control_group_by_score(job: AppConfig, tmp_path: Path,
                                                               capsys) -> None:
    target = tmp_path / "out" / "members.csv"
    assert run(target, "--level", "medium", "--format", "csv") == export.EXIT_OK
    assert only_file(target.parent) == target
    rows = read_csv(target)
    assert [r["user_id"] for r in rows] == MEDIUM_JUNE_1
    # The table has reason_1..3 (null in these hand-made rows), so the export carries them too.
    assert list(rows[0]) == ["user_id", "segment", "run_date", "score", "precision_tier", "control_group",
                             "reason_1", "reason_2", "reason_3"]
    assert rows[0] == {"user_id": "u01", "segment": "buyers", "run_date": "2026-06-01", "score": "0.9",
                       "precision_tier": "high", "control_group": "false", "reason_1": "", "reason_2": "",
                       "reason_3": ""}
    assert {r["control_group"] for r in rows} == {"false"}
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary == (f"wrote 7 members of buyers (level medium, 2026-06-01) to {target}; "
                       "1 control-group users left out")


def test_the_configured_level_is_the_default_and_high_is_stricter(job: AppConfig, tmp_path: Path) -> None:
    configured, high = tmp_path / "configured.csv", tmp_path / "high.csv"
    assert run(configured) == export.EXIT_OK  # format from the extension, level `configured` (is_member)
    assert [r["user_id"] for r in read_csv(configured)] == [*MEDIUM_JUNE_1, "u02"]  # low: u02 at 0.55 too
    assert run(high, "--level", "high") == export.EXIT_OK
    assert [r["user_id"] for r in read_csv(high)] == ["u01"]  # u03 (0.88) is control


def test_include_control_keeps_the_control_group(job: AppConfig, tmp_path: Path, capsys) -> None:
    target = tmp_path / "with_control.csv"
    assert run(target, "--level", "medium", "--include-control") == export.EXIT_OK
    rows = read_csv(target)
    assert [r["user_id"] for r in rows] == ["u01", "u03", "u04", "u09", "u12", "u05", "u06", "u11"]
    assert {r["user_id"]: r["control_group"] for r in rows}["u03"] == "true"
    assert capsys.readouterr().out.strip().endswith("control-group users included")


def test_changes_since_the_previous_night(job: AppConfig, tmp_path: Path, capsys) -> None:
    target = tmp_path / "changes.csv"
    assert run(target, "--level", "medium", "--changes") == export.EXIT_OK
    rows = read_csv(target)
    assert list(rows[0]) == ["user_id", "segment", "run_date", "change"]
    assert [(r["user_id"], r["change"]) for r in rows] == [
        ("u06", "entered"), ("u09", "entered"), ("u11", "entered"),
        ("u12", "entered"),  # out of the control group tonight: targetable now
        ("u02", "left"),
    ]
    assert {(r["segment"], r["run_date"]) for r in rows} == {("buyers", "2026-06-01")}
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f"wrote 5 changes of buyers (level medium, 2026-06-01; 4 entered, 1 left, since 2026-05-31) to {target}; "
        "1 control-group users left out")

    with_control = tmp_path / "changes_with_control.csv"
    assert run(with_control, "--level", "medium", "--changes", "--include-control") == export.EXIT_OK
    assert [(r["user_id"], r["change"]) for r in read_csv(with_control)] == [
        ("u06", "entered"), ("u09", "entered"), ("u11", "entered"), ("u02", "left"), ("u07", "left"),
    ]


def test_on_the_first_night_every_member_has_entered(job: AppConfig, tmp_path: Path, caplog) -> None:
    target = tmp_path / "first.csv"
    with caplog.at_level("INFO", logger="jobs.export"):
        assert run(target, "--level", "medium", "--changes", run_date=MAY_31) == export.EXIT_OK
    assert [(r["user_id"], r["change"]) for r in read_csv(target)] == [
        ("u01", "entered"), ("u02", "entered"), ("u04", "entered"), ("u05", "entered")]
    assert "no run date before 2026-05-31" in caplog.text and "every member is 'entered'" in caplog.text


def test_parquet_export_is_one_file_with_typed_columns(job: AppConfig, tmp_path: Path) -> None:
    target = tmp_path / "members.parquet"
    assert run(target, "--level", "medium", "--format", "parquet") == export.EXIT_OK
    assert only_file(tmp_path) == target
    table = pq.read_table(target)
    assert table.column_names == ["user_id", "segment", "run_date", "score", "precision_tier", "control_group",
                                  "reason_1", "reason_2", "reason_3"]
    assert table.column("reason_1").to_pylist() == [None] * len(MEDIUM_JUNE_1)
    assert table.column("user_id").to_pylist() == MEDIUM_JUNE_1
    assert table.column("run_date").to_pylist() == [JUNE_1] * len(MEDIUM_JUNE_1)
    assert table.column("score").to_pylist()[:2] == [0.90, 0.75]


def test_a_rerun_replaces_the_file_with_the_same_bytes(job: AppConfig, tmp_path: Path) -> None:
    for fmt in ("csv", "parquet"):
        target = tmp_path / fmt / f"changes.{fmt}"
        assert run(target, "--level", "medium", "--changes") == export.EXIT_OK
        first = target.read_bytes()
        assert run(target, "--level", "medium", "--changes") == export.EXIT_OK
        assert only_file(target.parent) == target
        assert target.read_bytes() == first


@pytest.mark.parametrize(("flags", "message"), [
    (["--segment", "buyer"], "segment 'buyer' has no rows in segment_membership (did you mean 'buyers'?); "
                             "segments there: buyers, churners"),
    (["--date", "2026-06-02"], "segment 'buyers' has no rows for 2026-06-02; its newest run dates: 2026-06-01, "
                               "2026-05-31"),
    (["--level", "mediun"], "unknown --level 'mediun' (did you mean 'medium'?); use one of high, medium, low, "
                            "configured"),
    (["--format", "xlsx"], "unknown --format 'xlsx'; use one of csv, parquet"),
])
def test_bad_input_is_one_line_and_exit_2(job: AppConfig, tmp_path: Path, capsys, flags: list[str],
                                          message: str) -> None:
    args = {"--segment": "buyers", "--date": JUNE_1.isoformat(), "--to": str(tmp_path / "x.csv")}
    args.update(dict(zip(flags[::2], flags[1::2], strict=True)))
    assert export.main([item for pair in args.items() for item in pair]) == export.EXIT_INVALID
    err = capsys.readouterr().err.strip()
    assert err == f"export: {message}"
    assert not (tmp_path / "x.csv").exists()


def test_a_target_without_a_known_extension_needs_format(job: AppConfig, tmp_path: Path, capsys) -> None:
    assert run(tmp_path / "members") == export.EXIT_INVALID
    assert "no --format, and --to" in capsys.readouterr().err


def test_membership_has_the_change_data_feed_from_its_first_commit(spark: SparkSession,
                                                                   workspace: AppConfig) -> None:
    path = tables.output_path(workspace, tables.SEGMENT_MEMBERSHIP)
    properties = {r.key: r.value for r in spark.sql(f"SHOW TBLPROPERTIES delta.`{path}`").collect()}
    assert properties["delta.enableChangeDataFeed"] == "true"
    assert properties["delta.enableDeletionVectors"] == "false"  # still reader-friendly
    history = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").orderBy("version").collect()
    assert [h.operation for h in history] == ["WRITE", "WRITE", "WRITE"]  # no separate property commit

    # Version 1 is the night of 2026-06-01 for buyers: its rows, all inserts.
    changes = (spark.read.format("delta").option("readChangeFeed", "true")
               .option("startingVersion", 1).option("endingVersion", 1).load(str(path)))
    rows = changes.select("user_id", "run_date", "_change_type", "_commit_version").collect()
    assert sorted(r.user_id for r in rows) == sorted(u for u, _, _ in NIGHTS[JUNE_1])
    assert {(r.run_date, r._change_type, r._commit_version) for r in rows} == {(JUNE_1, "insert", 1)}


def test_a_rerun_of_a_night_is_a_delete_and_an_insert_of_its_slice(spark: SparkSession,
                                                                   tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "ws")
    write_night(spark, cfg, "buyers", MAY_31, NIGHTS[MAY_31])
    write_night(spark, cfg, "buyers", MAY_31, NIGHTS[MAY_31][:2])
    path = tables.output_path(cfg, tables.SEGMENT_MEMBERSHIP)
    rerun = spark.sql(f"SELECT user_id, _change_type FROM table_changes_by_path('{path}', 1)").collect()
    deleted = sorted(r.user_id for r in rerun if r._change_type == "delete")
    inserted = sorted(r.user_id for r in rerun if r._change_type == "insert")
    assert deleted == sorted(u for u, _, _ in NIGHTS[MAY_31]) and inserted == ["u01", "u02"]

    # docs/bi.md's dedupe: per (segment, run_date, user) the newest version, an insert beating its delete.
    changes = (spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 0)
               .load(str(path)))
    newest_first = Window.partitionBy("segment", "run_date", "user_id").orderBy(
        F.col("_commit_version").desc(), (F.col("_change_type") == "insert").desc())
    latest = changes.withColumn("rank", F.row_number().over(newest_first)).where("rank = 1").drop("rank")
    assert sorted((r.user_id, r._change_type) for r in latest.collect()) == [
        ("u01", "insert"), ("u02", "insert"), *((u, "delete") for u in ("u03", "u04", "u05", "u06", "u07", "u08",
                                                                        "u12"))]
    assert changes.agg(F.max("_commit_version")).first()[0] == 1


def test_a_table_without_the_feed_gets_it_before_its_next_night(spark: SparkSession, tmp_path: Path) -> None:
    """A membership table an older release created: the next night's own commit is in the feed."""
    cfg = make_config(tmp_path / "ws")
    path = tables.output_path(cfg, tables.SEGMENT_MEMBERSHIP)
    tables.replace_partition(membership(spark, "buyers", MAY_31, NIGHTS[MAY_31]), path,
                             {"segment": "buyers", "run_date": MAY_31}, ("segment", "run_date"),
                             tables.READER_FRIENDLY_PROPERTIES)
    write_night(spark, cfg, "buyers", JUNE_1, NIGHTS[JUNE_1])
    properties = {r.key: r.value for r in spark.sql(f"SHOW TBLPROPERTIES delta.`{path}`").collect()}
    assert properties["delta.enableChangeDataFeed"] == "true"
    last = tables.delta_version(spark, path)
    inserted = spark.sql(f"SELECT user_id FROM table_changes_by_path('{path}', {last}, {last})").collect()
    assert sorted(r.user_id for r in inserted) == sorted(u for u, _, _ in NIGHTS[JUNE_1])


def test_a_directory_target_and_a_missing_table_are_exit_2(job: AppConfig, tmp_path: Path, capsys,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(tmp_path, "--format", "csv") == export.EXIT_INVALID
    assert capsys.readouterr().err.strip().startswith(f"export: --to {tmp_path} is a directory; name the file")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no staging folder left behind

    monkeypatch.setenv("SEGMENTS_WORKSPACE", str(tmp_path / "empty"))
    assert run(tmp_path / "x.csv") == export.EXIT_INVALID
    assert capsys.readouterr().err.strip().startswith("export: no segment_membership table at ")
