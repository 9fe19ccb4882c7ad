"""A changed segment definition retrains on the next night, and the summary says why (issue 21 item 2)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import mlflow
import pytest

from segments_lib.config import AppConfig
from segments_lib.job.runner import retrain_decision, run_job
from segments_lib.language.definitions import AnyOf, Occurs, SegmentDefinition, TrainingSettings, Treatment
from segments_lib.language.fingerprint import PARTS, changed_parts, fingerprint, question_changes
from segments_lib.locations import Location
from segments_lib.store import tables, tracking
from tests.conftest import DEMO_END, SHARED_WORKSPACE_GROUP, TRAINED_NIGHTS
from tests.support.segments import two_small_segments
from tests.support.workspaces import restored_afterwards

pytestmark = SHARED_WORKSPACE_GROUP  # built once, on one worker (tests/conftest.py)

BUY = "Purchase Completed"
BASE = SegmentDefinition(name="buyers", kind="conversion", target=Occurs((BUY,)), past_window=timedelta(days=28),
                         prediction_window=timedelta(days=7))


def test_each_part_of_the_definition_has_its_own_hash_and_cosmetic_changes_keep_them() -> None:
    before = fingerprint(BASE)
    assert list(before) == list(PARTS) and all(len(h) == 16 for h in before.values())
    cosmetic = dataclasses.replace(BASE, name="renamed", description="new words", kind="custom",
                                   precision_level=0.35,
                                   training=dataclasses.replace(BASE.training, retrain_every=timedelta(days=30),
                                                                min_positives=10))
    assert fingerprint(cosmetic) == before
    # Default feature windows (1d, 7d, P1) spelled out resolve to the same windows: the same model.
    assert fingerprint(dataclasses.replace(BASE, feature_windows=(timedelta(days=1), timedelta(days=7)))) == before

    def changed(**kwargs: object) -> list[str]:
        return changed_parts(before, fingerprint(dataclasses.replace(BASE, **kwargs)))

    assert changed(target=Occurs((BUY,), min_count=2)) == ["target"]
    assert changed(target=AnyOf((Occurs((BUY,)),))) == ["target"]  # another type with the same events
    assert changed(prediction_window=timedelta(days=14)) == ["windows"]
    assert changed(past_window=timedelta(days=56)) == ["windows", "features"]  # P1 is also a feature window
    assert changed(training=TrainingSettings(snapshots=6)) == ["training"]
    # An uplift segment asks who reaches the target because of its treatment: another question.
    assert changed(kind="uplift", treatment=Treatment(("Campaign Sent",))) == ["target"]
    assert changed_parts(None, before) == []  # a model from before fingerprints: nothing to compare


def test_a_new_trainer_retrains_but_asks_the_same_question() -> None:
    before = fingerprint(BASE)
    xgboost = fingerprint(dataclasses.replace(BASE, training=dataclasses.replace(BASE.training, trainer="xgboost")))
    assert changed_parts(before, xgboost) == ["trainer"]  # a new model: retrain, never reuse
    assert question_changes(before, xgboost) == []  # but the champion is compared with it, not replaced
    both = fingerprint(dataclasses.replace(BASE, prediction_window=timedelta(days=14),
                                           training=dataclasses.replace(BASE.training, trainer="xgboost")))
    assert question_changes(before, both) == ["windows"]
    # A champion fingerprinted before the trainer part existed was a Spark GBT: unchanged for a GBT segment.
    older = {part: digest for part, digest in before.items() if part != "trainer"}
    assert changed_parts(older, before) == []
    assert changed_parts(older, xgboost) == ["trainer"]


def test_a_changed_definition_retrains_first_whatever_the_retrain_clock() -> None:
    reason = retrain_decision(DEMO_END, DEMO_END, 30, "auto", definition_changed=["target", "windows"])
    assert reason == "segment definition changed since the champion was trained: target, windows"
    assert retrain_decision(DEMO_END, DEMO_END, 30, "never", definition_changed=["target"]) is None


@pytest.fixture()
def changed_segments(trained_workspace: AppConfig, tmp_path: Path) -> AppConfig:
    """The trained workspace's config with likely_to_purchase's target now "2 or more purchases"."""
    yaml_text = two_small_segments(retrain_every="30d").replace(
        "target: {occurs: {events: [Purchase Completed]}}", "target: {occurs: {events: [Purchase Completed], "
        "min_count: 2}}")
    assert "min_count: 2" in yaml_text
    path = tmp_path / "segments.yaml"
    path.write_text(yaml_text)
    return dataclasses.replace(trained_workspace, segments_file=Location.parse(str(path)))


def test_the_next_night_after_a_target_change_retrains_that_segment_only_and_promotes_it(
        spark, trained_workspace: AppConfig, changed_segments: AppConfig, capsys) -> None:
    night = TRAINED_NIGHTS[-1]
    with restored_afterwards(spark, trained_workspace.workspace.path):
        # An earlier test in this worker may have pointed MLflow at its own store.
        tracking.configure_mlflow(trained_workspace.mlflow)
        old = tracking.load_champion(trained_workspace.mlflow, "likely_to_purchase")
        assert old.definition is not None  # the shared workspace's models carry their fingerprint
        assert run_job(changed_segments, [night], None, "auto") == 0
        runs = {r.segment: r for r in tables.read_output(spark, changed_segments, tables.SEGMENT_RUNS)
                .where(f"run_date = DATE'{night}'").collect()}
        assert runs["likely_to_purchase"].retrained is True
        assert runs["likely_to_purchase"].retrain_reason == (
            "segment definition changed since the champion was trained: target")
        assert runs["engagement_booster"].retrained is False  # its definition is unchanged
        new = tracking.load_champion(changed_segments.mlflow, "likely_to_purchase")
        assert int(new.version) > int(old.version) and new.trained_run_date == night
        assert new.definition["target"] != old.definition["target"]
        assert {k: v for k, v in new.definition.items() if k != "target"} == {
            k: v for k, v in old.definition.items() if k != "target"}
        tags = mlflow.MlflowClient().get_model_version(new.model_name, new.version).tags
        assert tags["promotion_reason"] == (f"the segment's definition changed since champion v{old.version} "
                                            "(target)")
        assert "retrained: segment definition changed since the champion was trained: target" in capsys.readouterr().out
        # The change took effect once: the rerun of the night scores with the new champion.
        assert run_job(changed_segments, [night], None, "auto") == 0
        rerun = tables.read_output(spark, changed_segments, tables.SEGMENT_RUNS).where(
            f"run_date = DATE'{night}' AND segment = 'likely_to_purchase'").first()
        assert rerun.retrained is False and rerun.model_version == int(new.version)


def test_a_new_numeric_level_is_chosen_at_night_from_the_stored_evidence_without_a_retrain(
        spark, trained_workspace: AppConfig, tmp_path: Path) -> None:
    from scipy.stats import beta

    from segments_lib.promise import checks

    night = TRAINED_NIGHTS[-1]
    with restored_afterwards(spark, trained_workspace.workspace.path):
        tracking.configure_mlflow(trained_workspace.mlflow)  # as above
        champion = tracking.load_champion(trained_workspace.mlflow, "likely_to_purchase")
        choice_half = tracking.run_artifact_frame(champion.run_id, "threshold_choice_half.csv")
        minimum = trained_workspace.nightly.min_segment_size // 2  # threshold-fold members, half in this half
        # Clopper-Pearson 95% lower bounds on the choice half, computed here with scipy directly.
        tp, n = choice_half["true_positives"].to_numpy(float), choice_half["members"].to_numpy(float)
        bounds = [beta.ppf(0.05, t, m - t + 1) if t > 0 else 0.0 for t, m in zip(tp, n, strict=True)]
        choice_half = choice_half.assign(bound=bounds)
        large = choice_half[choice_half["members"] >= minimum]
        target = round(float(large["bound"].max()) - 0.015, 2)  # a number just inside what the evidence supports
        assert target > 0
        level = f"p{round(target * 100):02d}"
        assert level not in champion.thresholds
        expected = float(large[large["bound"] >= target - 1e-12]["threshold"].min())  # the lowest that qualifies

        yaml_text = two_small_segments(retrain_every="30d").replace("precision_level: medium",
                                                                    f"precision_level: {target}")
        path = tmp_path / "segments.yaml"
        path.write_text(yaml_text)
        changed = dataclasses.replace(trained_workspace, segments_file=Location.parse(str(path)))
        assert run_job(changed, [night], "likely_to_purchase", "auto") == 0

        run = tables.read_output(spark, changed, tables.SEGMENT_RUNS).where(
            f"run_date = DATE'{night}' AND segment = 'likely_to_purchase'").first()
        assert run.retrained is False and run.model_version == int(champion.version)  # no retrain
        assert (run.status, run.precision_level) == ("ok", level)
        assert run.threshold == pytest.approx(expected, abs=0)
        members = tables.read_output(spark, changed, tables.SEGMENT_MEMBERSHIP).where(
            f"run_date = DATE'{night}' AND segment = 'likely_to_purchase'").collect()
        assert run.member_count == sum(r.is_member for r in members) > 0
        assert all(r.is_member == (r.score >= expected) for r in members)
        # Recorded on the model: later nights read the threshold, and the ledger finds the promise.
        again = tracking.load_champion(changed.mlflow, "likely_to_purchase")
        assert again.thresholds[level] == expected and again.version == champion.version
        promise = checks.thresholds_of_run(champion.run_id)[level]
        assert promise["threshold"] == expected and promise["target_precision"] == target
        assert promise["promise_members"] > 0  # counted on the evidence half, as at training
