"""The nightly job end to end on small demo data: tables, idempotent reruns, isolation, BI readers."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date

import pytest

from segments_lib.config import AppConfig
from segments_lib.job.runner import retrain_decision, run_job
from segments_lib.store import tables
from tests.conftest import DEMO_END, SHARED_WORKSPACE_GROUP, TRAINED_NIGHTS
from tests.support.workspaces import restored_afterwards

pytestmark = SHARED_WORKSPACE_GROUP  # built once, on one worker (tests/conftest.py)

RUN_DATE = DEMO_END
NIGHTS = list(TRAINED_NIGHTS)


@pytest.fixture()
def night(trained_workspace: AppConfig) -> AppConfig:
    """The session's trained workspace (conftest): two segments on ~1.5k demo users backfilled over NIGHTS."""
    return trained_workspace


def _membership(spark, cfg: AppConfig):
    return tables.read_output(spark, cfg, tables.SEGMENT_MEMBERSHIP)


def _runs(spark, cfg: AppConfig, run_date: date = RUN_DATE) -> dict:
    runs = tables.read_output(spark, cfg, tables.SEGMENT_RUNS).where(f"run_date = DATE'{run_date}'")
    return {r.segment: r for r in runs.collect()}


def test_backfill_trains_once_then_reuses_the_champion(spark, night: AppConfig) -> None:
    runs = tables.read_output(spark, night, tables.SEGMENT_RUNS).collect()
    assert sorted((r.run_date, r.segment, r.retrained) for r in runs) == [
        (NIGHTS[0], "engagement_booster", True), (NIGHTS[0], "likely_to_purchase", True),
        (NIGHTS[1], "engagement_booster", False), (NIGHTS[1], "likely_to_purchase", False),
        (NIGHTS[2], "engagement_booster", False), (NIGHTS[2], "likely_to_purchase", False),
    ]
    assert {r.retrain_reason for r in runs if r.retrained} == {"no champion yet"}
    assert len({(r.segment, r.model_version) for r in runs}) == 2


def test_membership_has_one_row_per_eligible_user_and_matches_runs(spark, night: AppConfig) -> None:
    members = _membership(spark, night)
    runs = _runs(spark, night)
    assert set(runs) == {"likely_to_purchase", "engagement_booster"}
    for name, run in runs.items():
        assert run.status in ("ok", "precision_unreachable"), run.reason
        rows = members.where(f"segment = '{name}' AND run_date = DATE'{RUN_DATE}'")
        assert rows.count() == run.eligible_count > 0
        assert rows.select("user_id").distinct().count() == run.eligible_count
        assert rows.where("is_member").count() == run.member_count
        assert run.model_version >= 1 and run.mlflow_run_id
        assert run.stage_seconds["score"] > 0
    # Eligible = active in the 14 days before the run date: the same set for both segments.
    eligible = {
        name: {r.user_id for r in members.where(f"segment = '{name}'").select("user_id").collect()}
        for name in runs
    }
    assert eligible["likely_to_purchase"] == eligible["engagement_booster"]


def test_tiers_are_consistent_with_flags_and_scores(spark, night: AppConfig) -> None:
    inconsistent = _membership(spark, night).where(
        "(precision_tier = 'high') <> member_high "
        "OR (precision_tier IS NULL AND (member_high OR member_medium OR member_low)) "
        "OR (member_high AND NOT member_medium AND NOT member_low) "
        "OR score < 0 OR score > 1 OR score IS NULL"
    )
    assert inconsistent.count() == 0


@pytest.mark.parametrize("rerun", [NIGHTS[0], RUN_DATE], ids=["the training night", "a scoring night"])
def test_rerun_of_the_same_night_gives_identical_tables(spark, night: AppConfig, rerun: date) -> None:
    """The training night scored with the pipeline it had just fitted (held in memory); its rerun loads the
    champion from the store and must write the same rows, scores to the last bit included."""
    def snapshot() -> list[tuple]:
        rows = _membership(spark, night).orderBy("segment", "run_date", "user_id").collect()
        return [tuple(r) for r in rows]

    with restored_afterwards(spark, night.workspace.path):
        before = snapshot()
        version_before = tables.delta_version(spark, tables.output_path(night, tables.SEGMENT_MEMBERSHIP))
        assert run_job(night, [rerun], None, "auto") == 0
        assert snapshot() == before
        assert tables.delta_version(spark, tables.output_path(night, tables.SEGMENT_MEMBERSHIP)) > version_before
        runs = tables.read_output(spark, night, tables.SEGMENT_RUNS)
        assert runs.count() == 2 * len(NIGHTS)  # replaced, not appended
        assert {r.retrained for r in _runs(spark, night, rerun).values()} == {False}  # the champion was reused
        backtest = tables.read_output(spark, night, tables.SEGMENT_BACKTEST)
        assert backtest.count() == backtest.select("segment", "scored_date", "level").distinct().count()


def test_control_group_is_about_ten_percent_and_stable(spark, night: AppConfig) -> None:
    members = _membership(spark, night)
    # Both nights are in one 90-day rotation period, so a (segment, user) keeps one arm on both.
    arms = members.select("segment", "user_id", "control_group").distinct()
    total = arms.count()
    assert total == members.select("segment", "user_id").distinct().count()
    assert members.count() > total  # users scored on both nights, with one flag each
    control = arms.where("control_group").count()
    # share 0.10 of the (segment, user) draws: allow 4 binomial standard deviations.
    expected, sd = 0.10 * total, (total * 0.1 * 0.9) ** 0.5
    assert abs(control - expected) <= 4 * sd, (control, total)


def test_membership_is_readable_without_spark(night: AppConfig) -> None:
    import duckdb
    from deltalake import DeltaTable

    path = tables.output_path(night, tables.SEGMENT_MEMBERSHIP)
    dataset = DeltaTable(str(path)).to_pyarrow_dataset()  # noqa: F841 - queried by name below
    rows = duckdb.sql(
        "SELECT segment, count(*) AS n, count_if(is_member) AS members FROM dataset GROUP BY segment ORDER BY segment"
    ).fetchall()
    assert [r[0] for r in rows] == ["engagement_booster", "likely_to_purchase"]
    assert all(n > 0 for _, n, _ in rows)


def test_column_comments_and_current_view(spark, night: AppConfig) -> None:
    path = tables.output_path(night, tables.SEGMENT_MEMBERSHIP)
    described = {r.col_name: r.comment for r in spark.sql(f"DESCRIBE TABLE delta.`{path}`").collect()}
    assert described["control_group"].startswith("Random hold-out")
    tables.register_views(spark, night)
    current = spark.sql("SELECT DISTINCT segment, run_date FROM segment_membership_current").collect()
    assert spark.sql("SELECT DISTINCT run_date FROM segment_membership").count() == len(NIGHTS)
    assert sorted((r.segment, r.run_date) for r in current) == [
        ("engagement_booster", RUN_DATE), ("likely_to_purchase", RUN_DATE)
    ]


@pytest.mark.parametrize(("champion_date", "mode", "expected"), [
    (None, "auto", "no champion yet"),
    (date(2026, 5, 30), "auto", None),
    (date(2026, 5, 25), "auto", "champion is 7 days old (retrain_every 7d)"),
    (date(2026, 6, 5), "never", "champion was trained for 2026-06-05, after this run date"),
    (date(2026, 5, 30), "always", "--retrain always"),
    (date(2026, 5, 1), "never", None),
])
def test_retrain_decision(champion_date: date | None, mode: str, expected: str | None) -> None:
    assert retrain_decision(champion_date, RUN_DATE, 7, mode) == expected


@pytest.mark.parametrize(("last_trained", "expected"), [
    # A challenger trained 3 days ago lost to the 20-day-old champion: the clock restarted 3 days ago.
    (date(2026, 5, 29), None),
    (date(2026, 5, 25), "last training (2026-05-25) is 7 days old (retrain_every 7d)"),
    # A training for a later night (a backfill ran ahead) does not reset this night's clock.
    (date(2026, 6, 3), "champion is 20 days old (retrain_every 7d)"),
    (None, "champion is 20 days old (retrain_every 7d)"),
])
def test_retrain_clock_runs_from_the_newest_training(last_trained: date | None, expected: str | None) -> None:
    champion = date(2026, 5, 12)  # RUN_DATE is 2026-06-01
    assert retrain_decision(champion, RUN_DATE, 7, "auto", last_trained_run_date=last_trained) == expected


def test_backtest_judges_the_closed_night_against_what_happened(spark, night: AppConfig) -> None:
    """Realized precision of the 05-25 membership, checked against target events counted directly in the events."""
    judged = [row for segment, event in (("likely_to_purchase", "Purchase Completed"),
                                         ("engagement_booster", "Click Notification"))
              for row in _check_ledger_against_events(spark, night, segment, event)]
    # Some level had members on the judged night, so a realized precision was checked above.
    assert any(row.members > 0 for row in judged)


def _check_ledger_against_events(spark, night: AppConfig, segment: str, event: str) -> list:
    scored_date = NIGHTS[0]
    ledger = tables.read_output(spark, night, tables.SEGMENT_BACKTEST).where(
        f"segment = '{segment}' AND scored_date = DATE'{scored_date}'"
    ).collect()
    assert {r.level for r in ledger} == {"high", "medium", "low"}
    assert {r.evaluated_on for r in ledger} == {RUN_DATE}
    members = _membership(spark, night).where(
        f"segment = '{segment}' AND run_date = DATE'{scored_date}'"
    ).toPandas()
    events = spark.read.format("delta").load(str(night.events.path)).where(
        f"event_name = '{event}' AND event_time >= TIMESTAMP'2026-05-25 00:00:00' "
        "AND event_time < TIMESTAMP'2026-06-01 00:00:00'"
    ).select("user_id").distinct().toPandas()
    buyers = set(events["user_id"])
    for row in ledger:
        chosen = members[members[f"member_{row.level}"]]
        assert row.members == len(chosen)
        assert row.true_positives == int(chosen["user_id"].isin(buyers).sum())
        assert row.eligible == len(members)
        assert row.positives == int(members["user_id"].isin(buyers).sum())
        # A level without members has no realized precision and no verdict (see the ledger's contract).
        if row.members == 0:
            assert (row.realized_precision, row.meets_lower_bound) == (None, None)
        else:
            assert row.realized_precision == pytest.approx(row.true_positives / row.members)
            assert row.meets_lower_bound == (row.realized_precision >= row.promised_lower_bound)
    return ledger


def test_stability_and_drift_are_recorded(spark, night: AppConfig) -> None:
    import mlflow

    from segments_lib.store.tracking import configure_mlflow

    configure_mlflow(night.mlflow)
    runs = _runs(spark, night)
    members = _membership(spark, night)
    for name, run in runs.items():
        def member_set(day: date, segment: str = name) -> set[str]:
            rows = members.where(f"segment = '{segment}' AND run_date = DATE'{day}' AND is_member")
            return {r.user_id for r in rows.select("user_id").collect()}

        before, after = member_set(NIGHTS[1]), member_set(RUN_DATE)
        assert run.membership_entered == len(after - before)
        assert run.membership_exited == len(before - after)
        # Two empty member sets are identical: Jaccard 1.0 (the stability module's contract).
        union = before | after
        assert run.membership_jaccard == pytest.approx(len(before & after) / len(union) if union else 1.0)
        assert run.score_psi is not None and run.score_psi >= 0
        assert run.top_drifting_features
        drift = (tables.read_output(spark, night, tables.SEGMENT_DRIFT)
                 .where(f"segment = '{name}' AND run_date = DATE'{RUN_DATE}'").collect())
        (score_row,) = [r for r in drift if r.is_score]
        assert score_row.psi == pytest.approx(run.score_psi)
        watched = sorted((r for r in drift if not r.is_score), key=lambda r: r.drift_rank)
        assert 0 < len(watched) <= 20 and [r.drift_rank for r in watched] == list(range(1, len(watched) + 1))
        # segment_runs names the five worst, in the same order as the drift table ranks them.
        worst = [item.split("=")[0] for item in run.top_drifting_features.split(", ")]
        assert worst == [r.column_name for r in watched[:len(worst)]]
        # ... and the model's MLflow run charts it: one step per night, the step being the date's ordinal.
        history = mlflow.MlflowClient().get_metric_history(run.mlflow_run_id, "drift.score_psi")
        tonight = {m.value for m in history if m.step == RUN_DATE.toordinal()}  # a rerun logs the same value
        assert len(tonight) == 1 and tonight.pop() == pytest.approx(run.score_psi)
    first_night = _runs(spark, night, NIGHTS[0])
    assert all(r.membership_entered is None for r in first_night.values())  # no night before it


def test_a_failing_segment_does_not_stop_the_others(spark, night: AppConfig) -> None:
    """It leaves a failed row for the final night behind, so it runs on the workspace restored afterwards."""
    with restored_afterwards(spark, night.workspace.path):
        _fail_one_segment_and_check_the_other(spark, night)


def _fail_one_segment_and_check_the_other(spark, night: AppConfig) -> None:
    import mlflow

    from segments_lib.store import tracking

    champion = tracking.load_champion(night.mlflow, "engagement_booster")
    client = mlflow.MlflowClient()
    client.set_model_version_tag(champion.model_name, champion.version, tracking.TAG_THRESHOLDS, "{corrupt")
    try:
        code = run_job(night, [RUN_DATE], None, "never")
    finally:
        client.set_model_version_tag(champion.model_name, champion.version, tracking.TAG_THRESHOLDS,
                                     json.dumps(champion.thresholds, sort_keys=True))
    runs = _runs(spark, night)
    assert code == 1
    assert runs["engagement_booster"].status == "failed"
    assert "JSONDecodeError" in runs["engagement_booster"].reason
    assert runs["likely_to_purchase"].status in ("ok", "precision_unreachable")
    # The failed night left the previous membership of the failed segment in place.
    assert _membership(spark, night).where("segment = 'engagement_booster'").count() > 0


def test_the_night_scores_with_the_pipeline_it_trained_only_for_that_version() -> None:
    from pyspark.ml import PipelineModel

    from segments_lib.job.stages import Training
    from segments_lib.store.tracking import ChampionInfo

    fitted = PipelineModel(stages=[])
    registered = ChampionInfo("segments_x", "models:/segments_x/3", "3", "run3", RUN_DATE, {}, None, ())
    tonight = Training(retrained=True, model_version="3", pipeline=fitted)
    assert tonight.pipeline_of(registered) is fitted
    assert tonight.pipeline_of(replace(registered, version="2", model_uri="models:/segments_x/2")) is None
    assert tonight.pipeline_of(replace(registered, source="champion_copy")) is None
    assert Training(model_version="3").pipeline_of(registered) is None  # a reused run: load it
