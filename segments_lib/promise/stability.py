"""Night-to-night membership churn of one segment: who entered, who left, how similar the two nights are."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


@dataclass(frozen=True)
class ChurnStats:
    """Members that entered, exited and stayed between two nights, and the Jaccard similarity of the sets.

    `jaccard` = stayed / (entered + exited + stayed); two empty member sets are identical (1.0).
    Without a previous night every current member has `entered` and `jaccard` is None.
    """

    entered: int
    exited: int
    stayed: int
    jaccard: float | None


def _members(membership: DataFrame, member_col: str, what: str) -> DataFrame:
    missing = [c for c in ("user_id", member_col) if c not in membership.columns]
    if missing:
        raise ValueError(f"membership_churn: {what} frame lacks column(s) {missing}; found {membership.columns}")
    return membership.where(F.col(member_col)).select("user_id").distinct()


def membership_churn(previous: DataFrame | None, current: DataFrame, member_col: str = "is_member") -> ChurnStats:
    """Churn of one segment's members (rows where `member_col` is true) from `previous` to `current`.

    One full outer join on user_id and one aggregation; pass both nights' rows of the same segment.
    """
    now = _members(current, member_col, "current").select("user_id", F.lit(True).alias("in_current"))
    if previous is None:
        return ChurnStats(entered=now.count(), exited=0, stayed=0, jaccard=None)
    before = _members(previous, member_col, "previous").select("user_id", F.lit(True).alias("in_previous"))
    both = before.join(now, on="user_id", how="full_outer")
    in_previous, in_current = F.col("in_previous").isNotNull(), F.col("in_current").isNotNull()
    row = both.agg(
        F.count_if(in_current & ~in_previous).alias("entered"),
        F.count_if(in_previous & ~in_current).alias("exited"),
        F.count_if(in_previous & in_current).alias("stayed"),
    ).first()
    entered, exited, stayed = int(row["entered"]), int(row["exited"]), int(row["stayed"])
    union = entered + exited + stayed
    return ChurnStats(entered, exited, stayed, jaccard=stayed / union if union else 1.0)
