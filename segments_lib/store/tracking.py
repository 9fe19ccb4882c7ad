"""MLflow: the tracking store, experiment naming, run tags and params, the registry and champion/challenger.

One experiment per segment (`segments/<segment>`), one run per training, one registered model per
segment (`segments_<segment>`). Each registered version carries the thresholds calibrated for it as
model-version tags; the `challenger` alias names the newest trained version and `champion` the one
scoring uses. A challenger becomes champion when there is none, or when its holdout AUC-PR is at least
the champion's AUC-PR measured on the same holdout snapshot.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import mlflow
import mlflow.spark
import pandas as pd
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from segments_lib.config import MlflowConfig
from segments_lib.language import definitions
from segments_lib.language.definitions import format_duration

log = logging.getLogger(__name__)

SCORE_WITH_LAST_CHAMPION = "score_with_last_champion"
FAST_FAILURE_HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                              "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def configure_mlflow(cfg: MlflowConfig) -> str:
    """Point MLflow at the configured store; for the embedded store, create its folders. Returns the URI."""
    if cfg.tracking_uri.startswith("sqlite:///"):
        Path(cfg.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if cfg.artifact_location.is_local:  # an object-store artifact root needs no folder made in advance
        cfg.artifact_location.path.mkdir(parents=True, exist_ok=True)
    if cfg.on_unreachable == SCORE_WITH_LAST_CHAMPION:
        # MLflow's client retries a refused connection for minutes (7 tries, backoff factor 2); a night
        # that can fall back to its champion copy should learn within seconds that the store is gone.
        # Explicit settings in the environment win.
        for variable, value in FAST_FAILURE_HTTP_SETTINGS.items():
            os.environ.setdefault(variable, value)
    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_registry_uri(cfg.tracking_uri)
    return cfg.tracking_uri


def experiment_name(cfg: MlflowConfig, segment: str) -> str:
    return f"{cfg.experiment_prefix}/{segment}"


def registered_model_name(cfg: MlflowConfig, segment: str) -> str:
    return f"{cfg.experiment_prefix}_{segment}"


def ensure_experiment(cfg: MlflowConfig, segment: str) -> str:
    """Experiment id for a segment, created if new.

    Artifacts go under `mlflow.artifact_location`: a local folder, or an object store such as
    `s3a://bucket/mlflow` (MLflow spells it `s3://` and uploads with boto3, credentials from the
    environment). With a tracking server a local folder is left out, so the server's own artifact root
    applies: a local path there would land on the client's disk, not the server's.
    """
    name = experiment_name(cfg, segment)
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    if cfg.tracking_uri.startswith(("http://", "https://", "databricks")) and cfg.artifact_location.is_local:
        return mlflow.create_experiment(name)
    location = (cfg.artifact_location / segment).for_mlflow()
    return mlflow.create_experiment(name, artifact_location=location)


# --- Runs, registry and champion/challenger -------------------------------------------------------

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_SEGMENT = "segment"
TAG_KIND = "kind"
TAG_RUN_DATE = "run_date"
TAG_GIT_COMMIT = "git_commit"
TAG_THRESHOLDS = "thresholds"  # model-version tag: JSON {level: threshold or null}
THRESHOLD_TAG_PREFIX = "threshold."  # model-version tags threshold.<level>, one per level
TAG_HOLDOUT_AUC_PR = "holdout_auc_pr"
TAG_HOLDOUT_SNAPSHOT = "holdout_snapshot"
TAG_FEATURE_COLUMNS = "feature_columns"  # model-version tag: JSON list, the columns the model reads
TAG_DEFINITION = "definition"  # run and model-version tag: JSON {part: hash} (language.fingerprint)


@dataclass(frozen=True)
class ChampionInfo:
    """The registered version scoring should use, with the thresholds calibrated for exactly that version."""
    model_name: str
    model_uri: str  # models:/<name>/<version>
    version: str
    run_id: str
    trained_run_date: date | None
    thresholds: dict[str, float | None]
    holdout_auc_pr: float | None
    feature_columns: tuple[str, ...]
    definition: dict[str, str] | None = None  # the fingerprint it was trained with; None before fingerprints
    source: str = "registry"  # or "champion_copy": model_uri is then the copy's folder (store.champion_copy)


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    reason: str
    new_auc_pr: float
    champion_auc_pr: float | None  # the current champion scored on the same holdout snapshot
    previous_champion_version: str | None


@dataclass(frozen=True)
class ReusableRun:
    run_id: str
    model_version: str
    metrics: dict[str, float]


def git_commit(cwd: Path | None = None) -> str | None:
    """`git rev-parse HEAD` of the code that trains, or None outside a git checkout."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or Path(__file__).resolve().parent,
                                capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _param_value(value: Any) -> Any:

    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def flatten_params(value: Any, prefix: str = "") -> dict[str, str]:
    """Nested dataclasses, mappings and sequences → {'a.b.0.c': 'value'}; durations as '7d', times as ISO."""
    if is_dataclass(value) and not isinstance(value, type):
        nested: Any = {f.name: getattr(value, f.name) for f in fields(value)}
        if prefix:
            nested = {"type": type(value).__name__, **nested} if _is_target_term(value) else nested
    elif isinstance(value, Mapping):
        nested = dict(value)
    elif isinstance(value, (list, tuple)) and any(is_dataclass(v) for v in value):
        nested = {str(i): v for i, v in enumerate(value)}
    else:
        if isinstance(value, (list, tuple)):
            value = ",".join(str(_param_value(v)) for v in value)
        return {prefix: str(_param_value(value))}
    flat: dict[str, str] = {}
    for key, item in nested.items():
        flat.update(flatten_params(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _is_target_term(value: Any) -> bool:

    return isinstance(value, (definitions.Occurs, definitions.Absent, definitions.ValueSum, definitions.Sequence,
                              definitions.AllOf, definitions.AnyOf))


def run_tags(segment_name: str, kind: str, run_date: date) -> dict[str, str]:
    tags = {TAG_SEGMENT: segment_name, TAG_KIND: kind, TAG_RUN_DATE: run_date.isoformat()}
    commit = git_commit()
    if commit:
        tags[TAG_GIT_COMMIT] = commit
    return tags


def find_reusable_run(cfg: MlflowConfig, segment_name: str, run_date: date,
                      definition: Mapping[str, str] | None = None) -> ReusableRun | None:
    """A finished run of this (segment, run date) whose model was registered, newest first; else None.

    With `definition`, a run tagged with another definition fingerprint is not reused: the segment
    changed since that run trained, so tonight's rerun must train the new definition."""
    experiment = mlflow.get_experiment_by_name(experiment_name(cfg, segment_name))
    if experiment is None:
        return None
    runs = mlflow.search_runs(
        experiment_ids=[experiment.experiment_id],
        filter_string=(f"tags.{TAG_SEGMENT} = '{segment_name}' and tags.{TAG_RUN_DATE} = '{run_date.isoformat()}' "
                       "and attributes.status = 'FINISHED'"),
        order_by=["attributes.start_time DESC"],
        output_format="list",
    )
    client = mlflow.MlflowClient()
    name = registered_model_name(cfg, segment_name)
    for run in runs:
        trained_with = definition_tag(run.data.tags)
        if definition is not None and trained_with is not None and dict(trained_with) != dict(definition):
            continue
        versions = client.search_model_versions(f"name = '{name}' and run_id = '{run.info.run_id}'")
        if versions:
            newest = max(versions, key=lambda v: int(v.version))
            return ReusableRun(run.info.run_id, str(newest.version), dict(run.data.metrics))
    return None


def retire_unfinished_runs(cfg: MlflowConfig, segment_name: str, run_date: date) -> list[str]:
    """Delete the model versions of this (segment, run date)'s runs that never finished; the versions deleted.

    `mlflow.spark.log_model` registers a version before the run ends, so a night killed in between
    leaves a registered version whose run is still `RUNNING`. A finished run is reused instead of
    retraining (`find_reusable_run`), but an unfinished one is not trusted (the champion decision or
    the thresholds may be missing), so the rerun trains again and, without this, would register a
    second version for the same night. No membership can name such a version: scoring starts only
    after the run has ended. Aliases the deleted version held go back where they were: `champion` to
    the run's recorded previous champion, `challenger` to the newest remaining version. Called right
    before a new registration, so one job for a (segment, night) must not run twice at once.
    """
    experiment = mlflow.get_experiment_by_name(experiment_name(cfg, segment_name))
    if experiment is None:
        return []
    runs = mlflow.search_runs(
        experiment_ids=[experiment.experiment_id],
        filter_string=(f"tags.{TAG_SEGMENT} = '{segment_name}' and tags.{TAG_RUN_DATE} = '{run_date.isoformat()}' "
                       "and attributes.status != 'FINISHED'"),
        output_format="list",
    )
    client = mlflow.MlflowClient()
    name = registered_model_name(cfg, segment_name)
    retired: list[str] = []
    for run in runs:
        for version in client.search_model_versions(f"name = '{name}' and run_id = '{run.info.run_id}'"):
            aliases = set(version.aliases or ())
            client.delete_model_version(name, version.version)
            retired.append(str(version.version))
            _restore_aliases(client, name, aliases, run.data.tags.get("previous_champion_version"))
        client.set_tag(run.info.run_id, "retired", "never finished; its model version was deleted by the rerun")
        client.set_terminated(run.info.run_id, status="KILLED")
        log.warning("%s: run %s for %s never finished; deleted its model version(s) %s before registering again",
                    name, run.info.run_id, run_date, ", ".join(retired) or "(none)")
    return retired


def _restore_aliases(client: Any, name: str, aliases: set[str], previous_champion: str | None) -> None:
    if CHAMPION in aliases and previous_champion not in (None, "none"):
        client.set_registered_model_alias(name, CHAMPION, previous_champion)
    if CHALLENGER in aliases:
        remaining = client.search_model_versions(f"name = '{name}'")
        if remaining:
            client.set_registered_model_alias(name, CHALLENGER, str(max(int(v.version) for v in remaining)))


def register_model(
    cfg: MlflowConfig,
    segment_name: str,
    version: str,
    thresholds: Mapping[str, float | None],
    holdout_auc_pr: float,
    holdout_snapshot: datetime,
    run_date: date,
    feature_columns: list[str],
    definition: Mapping[str, str] | None = None,
) -> str:
    """Tag a freshly registered version with what scoring needs and give it the `challenger` alias.

    The version itself is created by `mlflow.spark.log_model(..., registered_model_name=...)`; this
    attaches the thresholds calibrated for exactly this version, so scoring never mixes a model with
    another version's thresholds. `challenger` always names the newest trained version.
    """

    client = mlflow.MlflowClient()
    name = registered_model_name(cfg, segment_name)
    tags = {
        TAG_SEGMENT: segment_name,
        TAG_RUN_DATE: run_date.isoformat(),
        TAG_HOLDOUT_AUC_PR: repr(float(holdout_auc_pr)),
        TAG_HOLDOUT_SNAPSHOT: holdout_snapshot.isoformat(),
        TAG_THRESHOLDS: json.dumps(dict(thresholds), sort_keys=True),
        TAG_FEATURE_COLUMNS: json.dumps(list(feature_columns)),
        **({TAG_DEFINITION: json.dumps(dict(definition), sort_keys=True)} if definition else {}),
        **{f"{THRESHOLD_TAG_PREFIX}{level}": "none" if value is None else repr(float(value))
           for level, value in thresholds.items()},
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CHALLENGER, version)
    return version


def _version_by_alias(cfg: MlflowConfig, segment_name: str, alias: str) -> Any | None:
    """The ModelVersion holding `alias`, or None (no registered model, or the alias is not set yet)."""
    try:
        return mlflow.MlflowClient().get_model_version_by_alias(registered_model_name(cfg, segment_name), alias)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
            return None
        raise


def champion_version(cfg: MlflowConfig, segment_name: str) -> Any | None:
    """The ModelVersion holding the `champion` alias, or None (no registered model or no champion yet)."""
    return _version_by_alias(cfg, segment_name, CHAMPION)


METRIC_LABELS = {"auc_pr": "AUC-PR", "qini": "Qini coefficient"}


def decide_promotion(new_auc_pr: float, champion_auc_pr: float | None, champion: str | None,
                     definition_changed: Sequence[str] = (), metric: str = "auc_pr") -> PromotionDecision:
    """The champion/challenger rule: promote when there is no champion or the new AUC-PR is at least the champion's.

    A champion trained for another definition (`definition_changed`: the parts that differ) answers
    another question, so comparing AUC-PRs means nothing: the new model is promoted. `metric` names the
    holdout number compared (an uplift segment compares Qini coefficients; higher is better for both)."""
    label = METRIC_LABELS[metric]
    if champion is None:
        return PromotionDecision(True, "no champion yet", new_auc_pr, None, None)
    if definition_changed:
        return PromotionDecision(True, f"the segment's definition changed since champion v{champion} "
                                 f"({', '.join(definition_changed)})", new_auc_pr, None, champion)
    if champion_auc_pr is None:
        return PromotionDecision(True, f"champion v{champion} cannot score the current features", new_auc_pr,
                                 None, champion)
    versus = f"champion v{champion} {champion_auc_pr:.4f}"
    if new_auc_pr >= champion_auc_pr:
        return PromotionDecision(True, f"holdout {label} {new_auc_pr:.4f} >= {versus}",
                                 new_auc_pr, champion_auc_pr, champion)
    return PromotionDecision(False, f"holdout {label} {new_auc_pr:.4f} < {versus}",
                             new_auc_pr, champion_auc_pr, champion)


def promote_if_better(
    cfg: MlflowConfig, segment_name: str, version: str, new_auc_pr: float,
    champion_auc_pr: float | None, champion: str | None, definition_changed: Sequence[str] = (),
    metric: str = "auc_pr",
) -> PromotionDecision:
    """Apply the rule, move the `champion` alias if it wins, and log both numbers and the decision.

    `champion_auc_pr` must be the current champion's AUC-PR on the same holdout snapshot as
    `new_auc_pr` (training scores it); None with a champion means the champion could not score it.
    Logs to the active run when there is one.
    """

    decision = decide_promotion(new_auc_pr, champion_auc_pr, champion, definition_changed, metric)
    name = registered_model_name(cfg, segment_name)
    client = mlflow.MlflowClient()
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "promotion", "champion" if decision.promoted else "challenger")
    client.set_model_version_tag(name, version, "promotion_reason", decision.reason)
    if mlflow.active_run() is not None:
        mlflow.set_tags({"promotion": "champion" if decision.promoted else "challenger",
                         "promotion_reason": decision.reason,
                         "previous_champion_version": champion or "none"})
        mlflow.log_metric(f"challenger_holdout_{metric}", new_auc_pr)
        if champion_auc_pr is not None:
            mlflow.log_metric(f"champion_holdout_{metric}", champion_auc_pr)
    log.info("%s v%s: %s (%s)", name, version, "champion" if decision.promoted else "challenger", decision.reason)
    return decision


def _thresholds_from_tags(tags: Mapping[str, str]) -> dict[str, float | None]:
    if TAG_THRESHOLDS in tags:
        return {k: (None if v is None else float(v)) for k, v in json.loads(tags[TAG_THRESHOLDS]).items()}
    return {key.removeprefix(THRESHOLD_TAG_PREFIX): (None if value == "none" else float(value))
            for key, value in tags.items() if key.startswith(THRESHOLD_TAG_PREFIX)}


def last_trained_run_date(cfg: MlflowConfig, segment_name: str) -> date | None:
    """Run date of the newest trained version (the `challenger` alias), or None when nothing was trained."""
    version = _version_by_alias(cfg, segment_name, CHALLENGER)
    if version is not None and version.run_id:
        run = mlflow.MlflowClient().get_run(version.run_id)
        if run.info.status != "FINISHED":  # a killed night's training does not restart the retrain clock
            champion = load_champion(cfg, segment_name)
            return None if champion is None else champion.trained_run_date
    return None if version is None else _model_info(cfg, segment_name, version).trained_run_date


def load_champion(cfg: MlflowConfig, segment_name: str) -> ChampionInfo | None:
    """The current champion of a segment and its thresholds, or None when there is none.

    A champion whose MLflow run never finished (a night killed between the promotion and the end of its
    run) is not trusted: the champion before it is returned instead (the killed run recorded it as
    `previous_champion_version`), so the night neither scores with that model nor skips the retraining
    it was due; the retraining then retires the unfinished version (`retire_unfinished_runs`).
    """
    version = champion_version(cfg, segment_name)
    client = mlflow.MlflowClient()
    name = registered_model_name(cfg, segment_name)
    for _ in range(3):  # a chain of killed nights is unlikely; give up on a champion after a few hops
        if version is None:
            return None
        run = client.get_run(version.run_id) if version.run_id else None
        if run is None or run.info.status == "FINISHED":
            return _model_info(cfg, segment_name, version)
        previous = run.data.tags.get("previous_champion_version")
        log.warning("%s v%s is the champion but its run %s never finished (%s); using the champion before it: %s",
                    name, version.version, version.run_id, run.info.status, previous or "none")
        version = client.get_model_version(name, previous) if previous not in (None, "none") else None
    return None


def load_version(cfg: MlflowConfig, segment_name: str, version: str) -> ChampionInfo:
    """A specific registered version with its thresholds (e.g. the model a backfilled night trained)."""
    found = mlflow.MlflowClient().get_model_version(registered_model_name(cfg, segment_name), str(version))
    return _model_info(cfg, segment_name, found)


def _model_info(cfg: MlflowConfig, segment_name: str, version: Any) -> ChampionInfo:
    tags = dict(version.tags or {})
    name = registered_model_name(cfg, segment_name)
    run_date = tags.get(TAG_RUN_DATE)
    auc = tags.get(TAG_HOLDOUT_AUC_PR)
    return ChampionInfo(
        model_name=name,
        model_uri=f"models:/{name}/{version.version}",
        version=str(version.version),
        run_id=version.run_id,
        trained_run_date=date.fromisoformat(run_date) if run_date else None,
        thresholds=_thresholds_from_tags(tags),
        holdout_auc_pr=float(auc) if auc else None,
        feature_columns=tuple(json.loads(tags.get(TAG_FEATURE_COLUMNS, "[]"))),
        definition=definition_tag(tags),
    )


def definition_tag(tags: Mapping[str, str]) -> dict[str, str] | None:
    """The definition fingerprint a run or version was tagged with, or None (older, or unreadable)."""
    try:
        value = json.loads(tags[TAG_DEFINITION])
    except (KeyError, ValueError):
        return None
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else None


ADDED_THRESHOLDS = "thresholds_added.json"  # levels a night chose after training (job.stages.with_segment_level)


def add_level(cfg: MlflowConfig, segment_name: str, model: ChampionInfo, level: str,
              choice: Mapping[str, Any]) -> None:
    """Record a level chosen after training on the model: its version's threshold tags and the run's
    `thresholds_added.json` (the promise the ledger checks), so later nights read it like any other."""
    client = mlflow.MlflowClient()
    name = registered_model_name(cfg, segment_name)
    threshold = choice.get("threshold")
    thresholds = {**model.thresholds, level: None if threshold is None else float(threshold)}
    client.set_model_version_tag(name, model.version, TAG_THRESHOLDS, json.dumps(thresholds, sort_keys=True))
    client.set_model_version_tag(name, model.version, f"{THRESHOLD_TAG_PREFIX}{level}",
                                 "none" if threshold is None else repr(float(threshold)))
    added = optional_run_artifact_json(model.run_id, ADDED_THRESHOLDS) or {}
    client.log_dict(model.run_id, {**added, level: dict(choice)}, ADDED_THRESHOLDS)


def optional_run_artifact_json(run_id: str, name: str) -> Any | None:
    """A JSON artifact of a run, or None when the run has no such artifact."""
    listed = {f.path for f in mlflow.MlflowClient().list_artifacts(run_id)}
    return run_artifact_json(run_id, name) if name in listed else None


def run_artifact_json(run_id: str, name: str) -> object:


    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=name)
    with open(local, encoding="utf-8") as handle:
        return json.load(handle)


def load_spark_model(model_uri: str) -> Any:
    """The Spark ML pipeline logged at `model_uri` (models:/<name>/<version>, a run URI or a path)."""
    return mlflow.spark.load_model(model_uri)


def run_artifact_frame(run_id: str, name: str) -> pd.DataFrame:
    """A CSV artifact of a run (e.g. `threshold_curve.csv`) as a pandas frame."""
    return pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=name))


def log_nightly_metrics(run_id: str, run_date: date, values: list[tuple[str, float]]) -> None:
    """Metrics of a model's run for one night, stepped by the run date's ordinal (one point per night).

    One `log_batch` call: a night adds a handful of points to the run, not one request per metric.
    """
    moment = int(datetime(run_date.year, run_date.month, run_date.day, tzinfo=timezone.utc).timestamp() * 1000)
    mlflow.MlflowClient().log_batch(run_id, metrics=[Metric(key, value, moment, run_date.toordinal())
                                                     for key, value in values])
