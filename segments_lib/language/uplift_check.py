"""The dry-run check of an uplift segment: is there a randomized exposure to learn from at snapshot T?

Three questions, at the same newest complete snapshot the propensity check uses:

1. Does the treatment happen at all: eligible users with a treatment event in [T, T + window)?
2. Does each arm meet the training minimums on its own? The T-learner fits one model per arm, each
   with the same `training.min_positives` / `min_negatives` as any segment's model.
3. Does the exposure look randomized? Before T the two arms must look alike. For a few behaviours
   everyone has (events, active days and days since the last event in the past window, and tenure),
   the standardized mean difference SMD = (mean_t − mean_c) / sqrt((var_t + var_c) / 2) is compared
   with 0.1, the usual limit for a negligible imbalance (Austin 2009, Statistics in Medicine 28:3083).
   A campaign sent to the most active users, say, shows up here, and an uplift model trained on it
   would mistake "was active" for "responds to the campaign".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from segments_lib.language.definitions import SegmentDefinition, Treatment
from segments_lib.language.treatment import behaviour_events, treatment_flags

BALANCE_LIMIT = 0.1
BALANCE_FEATURES = ("events_in_past_window", "active_days_in_past_window", "days_since_last_event", "tenure_days")


@dataclass(frozen=True)
class ArmCounts:
    users: int
    positives: int

    @property
    def negatives(self) -> int:
        return self.users - self.positives


@dataclass(frozen=True)
class UpliftCheck:
    treatment: Treatment
    treated: ArmCounts
    control: ArmCounts
    smd: dict[str, float]  # feature -> standardized mean difference (treated − control)

    @property
    def treated_share(self) -> float:
        total = self.treated.users + self.control.users
        return self.treated.users / total if total else 0.0

    @property
    def worst_balance(self) -> tuple[str, float] | None:
        finite = {k: v for k, v in self.smd.items() if not math.isnan(v)}
        return max(finite.items(), key=lambda kv: abs(kv[1])) if finite else None


def pre_treatment_behaviour(events: DataFrame, population: DataFrame, segment: SegmentDefinition) -> DataFrame:
    """`snapshot_time`, `user_id` and BALANCE_FEATURES per population row, from events before T only."""
    window_start = F.col("snapshot_time") - F.lit(segment.past_window)
    history_start = F.col("snapshot_time") - F.lit(segment.history)
    snapshots = population.select("snapshot_time").distinct()
    before = (events.select("user_id", "event_time").join(
        F.broadcast(snapshots), (F.col("event_time") < F.col("snapshot_time")) & (F.col("event_time") >= history_start))
    )
    in_window = F.col("event_time") >= window_start
    seconds_per_day = 86_400.0
    per_user = before.groupBy("snapshot_time", "user_id").agg(
        F.sum(F.when(in_window, 1).otherwise(0)).cast("double").alias("events_in_past_window"),
        F.countDistinct(F.when(in_window, F.to_date("event_time"))).cast("double").alias("active_days_in_past_window"),
        ((F.unix_timestamp(F.first("snapshot_time")) - F.unix_timestamp(F.max("event_time"))) / seconds_per_day)
        .alias("days_since_last_event"),
        ((F.unix_timestamp(F.first("snapshot_time")) - F.unix_timestamp(F.min("event_time"))) / seconds_per_day)
        .alias("tenure_days"),
    )
    return population.select("snapshot_time", "user_id").join(per_user, on=["snapshot_time", "user_id"], how="inner")


def check_uplift(events: DataFrame, population: DataFrame, labels: DataFrame, segment: SegmentDefinition,
                 snapshot: datetime) -> UpliftCheck:
    """Arm sizes, positives and pre-treatment balance of the eligible users at `snapshot`."""
    if segment.treatment is None:
        raise ValueError(f"segment '{segment.name}' has no treatment: only kind: uplift segments are checked here")
    keys = ["snapshot_time", "user_id"]
    flags = treatment_flags(events, population, segment.treatment.events, segment.treatment.window)
    before = pre_treatment_behaviour(behaviour_events(events, segment), population, segment)
    rows = (labels.join(flags, on=keys).join(before, on=keys, how="left")
            .persist())
    arms = {r["treated"]: r for r in rows.groupBy("treated").agg(
        F.count(F.lit(1)).alias("users"), F.sum("label").alias("positives"),
        *[F.avg(c).alias(f"mean_{c}") for c in BALANCE_FEATURES],
        *[F.var_samp(c).alias(f"var_{c}") for c in BALANCE_FEATURES]).collect()}
    rows.unpersist()

    def counts(arm: int) -> ArmCounts:
        row = arms.get(arm)
        return ArmCounts(int(row["users"]), int(row["positives"] or 0)) if row else ArmCounts(0, 0)

    smd: dict[str, float] = {}
    for feature in BALANCE_FEATURES:
        t, c = arms.get(1), arms.get(0)
        if t is None or c is None or t[f"var_{feature}"] is None or c[f"var_{feature}"] is None:
            smd[feature] = float("nan")
            continue
        pooled = math.sqrt((t[f"var_{feature}"] + c[f"var_{feature}"]) / 2)
        difference = t[f"mean_{feature}"] - c[f"mean_{feature}"]
        smd[feature] = difference / pooled if pooled > 0 else (0.0 if difference == 0 else math.inf)
    return UpliftCheck(segment.treatment, counts(1), counts(0), smd)


def uplift_problems(check: UpliftCheck, segment: SegmentDefinition, snapshot: datetime) -> list[str]:
    """Why the segment cannot be trained as an uplift segment; empty when it can."""
    names = ", ".join(f"'{e}'" for e in check.treatment.events)
    day = f"{snapshot:%Y-%m-%d}"
    if check.treated.users == 0:
        return [f"no eligible user has {names} in the first {_days(check)} of the prediction window at {day}: "
                "an uplift segment learns from snapshots where a randomized exposure happened"]
    problems = []
    training = segment.training
    for name, arm in (("treated", check.treated), ("control", check.control)):
        if arm.positives < training.min_positives or arm.negatives < training.min_negatives:
            problems.append(f"the {name} arm at {day} has {arm.positives} positives and {arm.negatives} negatives; "
                            f"each arm needs training.min_positives {training.min_positives} and "
                            f"training.min_negatives {training.min_negatives}")
    worst = check.worst_balance
    if worst is not None and abs(worst[1]) > BALANCE_LIMIT:
        problems.append(f"the exposure at {day} does not look randomized: {worst[0]} differs between treated and "
                        f"control by {worst[1]:+.2f} standard deviations (limit ±{BALANCE_LIMIT}); an uplift model "
                        "needs a random share of users exposed and the rest held back")
    return problems


def _days(check: UpliftCheck) -> str:
    hours = check.treatment.window.total_seconds() / 3600
    return f"{hours / 24:g}d" if hours % 24 == 0 else f"{hours:g}h"


def describe(check: UpliftCheck, segment_name: str) -> str:
    """One report line: arm sizes, the treated share and the worst imbalance."""
    worst = check.worst_balance
    balance = f"largest imbalance {worst[0]} {worst[1]:+.3f} SD" if worst else "balance not measurable"
    return (f"  {segment_name}: treated {check.treated.users:,} ({check.treated.positives:,} positives), control "
            f"{check.control.users:,} ({check.control.positives:,} positives), treated share "
            f"{check.treated_share:.1%}; {balance}")
