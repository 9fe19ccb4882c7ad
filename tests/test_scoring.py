"""Membership rows: tiers, per-level flags, unreachable levels and the hashed control group."""

from __future__ import annotations

from datetime import date

from segments_lib.job.scoring import (
    MEMBERSHIP_SCHEMA,
    LevelThreshold,
    ScoringContext,
    level_thresholds,
    membership_rows,
)

LEVELS = (
    LevelThreshold("high", 0.8, 0.70),
    LevelThreshold("medium", 0.6, 0.40),
    LevelThreshold("low", 0.4, 0.20),
)


def _ctx(levels=LEVELS, share: float = 0.0, segment_level: str = "medium") -> ScoringContext:
    return ScoringContext(
        segment="seg", run_date=date(2026, 5, 1), segment_level=segment_level, levels=levels,
        model_name="segments_seg", model_version=3, mlflow_run_id="abc", control_share=share,
    )


def test_tiers_and_flags_follow_the_thresholds(spark) -> None:
    scored = spark.createDataFrame(
        [("u1", 0.90), ("u2", 0.70), ("u3", 0.55), ("u4", 0.20), ("u5", 0.05)], "user_id string, score double"
    )
    rows = {r.user_id: r for r in membership_rows(scored, _ctx()).collect()}
    assert [(u, rows[u].precision_tier) for u in sorted(rows)] == [
        ("u1", "high"), ("u2", "high"), ("u3", "medium"), ("u4", "low"), ("u5", None),
    ]
    assert [rows[u].member_high for u in sorted(rows)] == [True, True, False, False, False]
    assert [rows[u].member_medium for u in sorted(rows)] == [True, True, True, False, False]
    assert [rows[u].member_low for u in sorted(rows)] == [True, True, True, True, False]
    assert [rows[u].is_member for u in sorted(rows)] == [True, True, True, False, False]
    assert {rows[u].threshold for u in rows} == {0.40}
    assert {(r.model_name, r.model_version, r.mlflow_run_id, r.run_date) for r in rows.values()} == {
        ("segments_seg", 3, "abc", date(2026, 5, 1))
    }


def test_unreachable_level_has_no_members_and_tier_skips_it(spark) -> None:
    levels = (LevelThreshold("high", 0.8, None), LevelThreshold("medium", 0.6, 0.5), LevelThreshold("low", 0.4, 0.1))
    scored = spark.createDataFrame([("a", 0.99), ("b", 0.3)], "user_id string, score double")
    rows = {r.user_id: r for r in membership_rows(scored, _ctx(levels, segment_level="high")).collect()}
    assert rows["a"].member_high is False and rows["a"].precision_tier == "medium"
    assert rows["b"].precision_tier == "low"
    assert rows["a"].is_member is False and rows["a"].threshold is None


def test_schema_is_the_documented_contract(spark) -> None:
    scored = spark.createDataFrame([("a", 0.5)], "user_id string, score double")
    actual = [(f.name, f.dataType) for f in membership_rows(scored, _ctx()).schema]
    assert actual == [(f.name, f.dataType) for f in MEMBERSHIP_SCHEMA]


def test_control_group_share_is_deterministic_and_close_to_configured(spark) -> None:
    scored = spark.range(4000).selectExpr("cast(id as string) as user_id", "0.5 as score")
    first = membership_rows(scored, _ctx(share=0.10)).where("control_group").select("user_id")
    again = membership_rows(scored, _ctx(share=0.10)).where("control_group").select("user_id")
    ids = {r.user_id for r in first.collect()}
    assert ids == {r.user_id for r in again.collect()}
    # 4000 users at 10 %: expect 400, binomial sd ≈ 19; 5 sd either way.
    assert 305 <= len(ids) <= 495
    none = membership_rows(scored, _ctx(share=0.0)).where("control_group").count()
    assert none == 0


def test_level_thresholds_pairs_promises_with_thresholds() -> None:
    pairs = level_thresholds({"high": 0.8, "low": 0.4}, {"high": None, "low": 0.25})
    assert pairs == (LevelThreshold("high", 0.8, None), LevelThreshold("low", 0.4, 0.25))
