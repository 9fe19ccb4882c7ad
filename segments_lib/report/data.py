"""What the segment report shows, computed from pandas copies of the output tables (no I/O, no Spark).

Every function takes the frames as `jobs.report` reads them (segment_runs, segment_thresholds,
segment_backtest, segment_drift, and the reason counts of segment_membership) and returns a small
frame or value for one segment, so each number on the page can be checked by hand in a test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

import pandas as pd

from segments_lib.language.definitions import NAMED_LEVELS


@dataclass(frozen=True)
class LevelMark:
    """One precision level of tonight's run: its threshold and the members it selected."""

    level: str
    threshold: float
    members: int | None
    configured: bool  # the segment's own level (is_member), which may be a number such as p25


@dataclass(frozen=True)
class ReportInput:
    """The frames one night's report is built from; `reasons` is None when membership has no reason_1."""

    run_date: date
    runs: pd.DataFrame  # segment_runs, nights up to run_date
    thresholds: pd.DataFrame  # segment_thresholds of run_date
    backtest: pd.DataFrame  # segment_backtest rows evaluated on or before run_date (may be empty)
    drift: pd.DataFrame  # segment_drift, nights up to run_date (may be empty)
    reasons: pd.DataFrame | None  # segment, reason, members: reason_1 counts among run_date's members
    history_nights: int = 30


def present(value: object) -> bool:
    """A value the tables really hold: Spark's nulls arrive in pandas as None, NaN or NaT."""
    if value is None or value is pd.NaT:
        return False
    return not (isinstance(value, float) and math.isnan(value))


def segments_on(runs: pd.DataFrame, run_date: date) -> list[str]:
    """The segments with a segment_runs row on `run_date`, by name."""
    return sorted(runs.loc[runs["run_date"] == run_date, "segment"].unique())


def run_row(runs: pd.DataFrame, segment: str, run_date: date) -> Mapping[str, object]:
    """The segment's segment_runs row of `run_date` (the newest one, should a night have run twice)."""
    rows = runs[(runs["segment"] == segment) & (runs["run_date"] == run_date)]
    if "finished_at" in rows.columns:
        rows = rows.sort_values("finished_at", na_position="first")
    return rows.iloc[-1].to_dict()


def curve(thresholds: pd.DataFrame, segment: str) -> pd.DataFrame:
    """The segment's precision-vs-reach curve, lowest threshold (largest reach) first."""
    rows = thresholds[thresholds["segment"] == segment]
    return rows.sort_values(["threshold", "point"]).reset_index(drop=True)


def base_rate(curve_frame: pd.DataFrame) -> float | None:
    """The precision of the curve's lowest threshold: targeting (nearly) every eligible user, the rate a
    segment has to beat. None for an empty curve."""
    if curve_frame.empty:
        return None
    return float(curve_frame.sort_values("threshold").iloc[0]["expected_precision"])


def level_marks(run: Mapping[str, object]) -> list[LevelMark]:
    """Tonight's levels that have a threshold: high / medium / low, then the configured level when it is a
    number rather than a named level (its members are member_count)."""
    configured = str(run.get("precision_level") or "")
    marks = [LevelMark(level, float(run[f"threshold_{level}"]),
                       int(run[f"members_{level}"]) if present(run.get(f"members_{level}")) else None,
                       configured == level)
             for level in NAMED_LEVELS if present(run.get(f"threshold_{level}"))]
    if configured and configured not in NAMED_LEVELS and present(run.get("threshold")):
        members = run.get("member_count")
        marks.append(LevelMark(configured, float(run["threshold"]),
                               int(members) if present(members) else None, True))
    return marks


def mark_point(curve_frame: pd.DataFrame, threshold: float) -> Mapping[str, float] | None:
    """The curve point a level's threshold selects: the lowest curve threshold at or above it (a level's
    threshold is one of the curve's, so this is normally an exact match). None above the curve."""
    above = curve_frame[curve_frame["threshold"] >= threshold - 1e-12]
    if above.empty:
        return None
    row = above.sort_values("threshold").iloc[0]
    return {"reach": float(row["expected_size_today"]), "precision": float(row["expected_precision"]),
            "lower": float(row["precision_lower"])}


def _recent(frame: pd.DataFrame, column: str, run_date: date, nights: int) -> pd.DataFrame:
    """Rows of the newest `nights` distinct dates in `column` on or before `run_date`, oldest first."""
    kept = frame[frame[column] <= run_date]
    dates = sorted(kept[column].unique())[-nights:]
    return kept[kept[column].isin(dates)].sort_values(column).reset_index(drop=True)


def nightly_series(runs: pd.DataFrame, segment: str, run_date: date, nights: int = 30) -> pd.DataFrame:
    """run_date, score_psi, membership_entered / exited / jaccard, holdout_auc_pr, model_version: one row a
    night of the segment's past `nights` runs, oldest first."""
    columns = ["run_date", "score_psi", "membership_entered", "membership_exited", "membership_jaccard",
               "holdout_auc_pr", "model_version"]
    mine = runs[runs["segment"] == segment]
    if "finished_at" in mine.columns:  # a night run twice keeps its newest row
        mine = mine.sort_values("finished_at", na_position="first")
    mine = mine.drop_duplicates("run_date", keep="last")
    return _recent(mine, "run_date", run_date, nights)[columns]


def churn_series(runs: pd.DataFrame, segment: str, run_date: date, nights: int = 30) -> pd.DataFrame:
    """Nights with a membership comparison (every night but a segment's first): run_date, entered,
    exited, jaccard."""
    series = nightly_series(runs, segment, run_date, nights)
    series = series[series["membership_jaccard"].map(present)]
    return (series.rename(columns={"membership_entered": "entered", "membership_exited": "exited",
                                   "membership_jaccard": "jaccard"})
            [["run_date", "entered", "exited", "jaccard"]].reset_index(drop=True))


def psi_series(runs: pd.DataFrame, segment: str, run_date: date, nights: int = 30) -> pd.DataFrame:
    """Nights with a score PSI: run_date, score_psi."""
    series = nightly_series(runs, segment, run_date, nights)
    return series[series["score_psi"].map(present)][["run_date", "score_psi"]].reset_index(drop=True)


def top_drifting(drift: pd.DataFrame, segment: str, run_date: date, top: int = 5) -> pd.DataFrame:
    """Tonight's most drifted features (column_name, psi), highest PSI first; the score row is left out
    (it is the PSI series)."""
    if drift.empty:
        return pd.DataFrame({"column_name": [], "psi": []})
    rows = drift[(drift["segment"] == segment) & (drift["run_date"] == run_date) & ~drift["is_score"].astype(bool)]
    rows = rows[rows["psi"].map(present)]
    return (rows.sort_values(["psi", "column_name"], ascending=[False, True]).head(top)
            [["column_name", "psi"]].reset_index(drop=True))


def promise_history(backtest: pd.DataFrame, segment: str, run_date: date, nights: int = 30) -> pd.DataFrame:
    """The judged promises of the segment's past `nights` scored dates (as known on `run_date`): scored_date,
    level, promised_precision, promised_lower_bound, realized_precision, members, meets_lower_bound; one row
    per (scored_date, level), the newest evaluation of each."""
    columns = ["scored_date", "level", "promised_precision", "promised_lower_bound", "realized_precision",
               "members", "meets_lower_bound"]
    if backtest.empty:
        return pd.DataFrame({c: [] for c in columns})
    mine = backtest[(backtest["segment"] == segment) & (backtest["evaluated_on"] <= run_date)]
    mine = mine.sort_values("evaluated_on").drop_duplicates(["scored_date", "level"], keep="last")
    return _recent(mine, "scored_date", run_date, nights).sort_values(["level", "scored_date"])[columns] \
        .reset_index(drop=True)


def top_reasons(reasons: pd.DataFrame | None, segment: str, top: int = 5) -> pd.DataFrame | None:
    """The most frequent reason_1 values among tonight's members (reason, members, share of the members
    with a reason), or None when the membership table has no reasons."""
    if reasons is None:
        return None
    mine = reasons[reasons["segment"] == segment]
    total = float(mine["members"].sum())
    ranked = mine.sort_values(["members", "reason"], ascending=[False, True]).head(top)
    return pd.DataFrame({"reason": ranked["reason"].tolist(), "members": ranked["members"].astype(int).tolist(),
                         "share": [m / total for m in ranked["members"]] if total else []})


def auc_pr_lift(auc_pr: object, rate: float | None) -> float | None:
    """Holdout AUC-PR over the base rate: a random score's AUC-PR is the base rate, so 1.0 means no skill."""
    if not present(auc_pr) or not rate:
        return None
    return float(auc_pr) / rate
