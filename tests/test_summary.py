"""The end-of-job summary a person reads: one line per segment, its own level's members first."""

from __future__ import annotations

from datetime import date

from segments_lib.job.results import SegmentResult, summary_table


def test_summary_shows_the_segments_own_level_next_to_the_named_levels() -> None:
    results = [
        SegmentResult(segment="cart_abandonment", run_date=date(2026, 6, 1), precision_level="p30",
                      eligible_count=6842, member_count=57, members_by_level={"high": 0, "medium": 0, "low": 0},
                      holdout_auc_pr=0.2301, model_version=3, mlflow_run_id="abc"),
        SegmentResult(segment="churn_risk", run_date=date(2026, 6, 1), status="failed", precision_level="medium",
                      reason="boom"),
    ]
    lines = summary_table(results, "sqlite:///x.db").splitlines()
    assert lines[0].split() == ["segment", "status", "level", "eligible", "members", "high", "medium", "low",
                                "AUC-PR", "model", "mlflow", "run"]
    assert lines[2].split() == ["cart_abandonment", "ok", "p30", "6842", "57", "0", "0", "0", "0.230", "3", "abc"]
    assert lines[3].split() == ["churn_risk", "failed", "medium", "0", "0", "-", "-", "-", "-", "-", "-"]
    assert lines[4].strip() == "↳ boom"
    assert lines[-1] == "MLflow: sqlite:///x.db"
