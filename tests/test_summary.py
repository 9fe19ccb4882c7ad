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


def test_levels_show_threshold_promise_lift_and_members_and_an_unreachable_level_says_what_is_reachable() -> None:
    import pandas as pd

    from segments_lib.job.level_report import curve_base_rate, level_summaries, reachable_hint, strictest_number

    targets = {"high": 0.6, "medium": 0.4, "low": 0.2}
    thresholds = {"high": None, "medium": 0.5123, "low": 0.21}
    promises = {  # thresholds.json of the model run
        "high": {"expected_precision": None, "precision_lower": None, "best_precision": 0.47,
                 "best_precision_members": 80},
        "medium": {"expected_precision": 0.45, "precision_lower": 0.41},
        "low": {"expected_precision": 0.25, "precision_lower": 0.22},
    }
    levels = level_summaries(targets, thresholds, promises, {"high": 0, "medium": 412, "low": 1500})
    # The held-out curve, lowest threshold (everyone: 1,000 users, 100 positives) first.
    curve = pd.DataFrame({"threshold": [0.0, 0.3, 0.6], "precision": [0.10, 0.30, 0.55],
                          "precision_lower": [0.085, 0.27, 0.453], "recall": [1.0, 0.6, 0.2],
                          "members": [1000, 200, 40], "tonight": [5000, 900, 150]})
    base = curve_base_rate(curve)
    assert base == 0.10
    # The stored choice half: 95% Clopper-Pearson bounds 0.1546 (40 of 200), 0.3874 (30 of 60) and 0.6058
    # (9 of 10, but 10 < 50 // 2 members). Strictest number: 0.38, first reached at threshold 0.5.
    choice_half = pd.DataFrame({"threshold": [0.1, 0.5, 0.9], "members": [200, 60, 10],
                                "true_positives": [40, 30, 9], "precision": [0.2, 0.5, 0.9]})
    number = strictest_number(choice_half, min_segment_size=50, confidence=0.95)
    assert number == (0.38, 0.5)
    lines = summary_table([SegmentResult(
        segment="likely_to_purchase", run_date=date(2026, 6, 1), status="precision_unreachable",
        precision_level="high", eligible_count=5000, member_count=0,
        members_by_level={"high": 0, "medium": 412, "low": 1500}, reason="no threshold reaches precision 0.60",
        reachable_hint=reachable_hint(levels, number, 730), levels=levels, base_rate=base)],
        "sqlite:///x.db").splitlines()
    assert lines[4].strip() == ("↳ instead: strictest reachable level: medium (0.40, 412 members tonight); "
                                "precision_level: 0.38 is reachable with this model (threshold 0.5000, 730 "
                                "members tonight)")
    assert lines[5].split() == ["level", "promise", "threshold", "precision", "bound", "lift", "members"]
    assert lines[6].split()[:3] == ["high", "0.60", "unreachable"]
    assert "best held-out precision 0.47 at 80 users" in lines[6]
    # lift = expected precision / base rate: 0.45 / 0.10 = 4.5, 0.25 / 0.10 = 2.5
    assert lines[7].split() == ["medium", "0.40", "0.5123", "0.450", "0.410", "4.5x", "412"]
    assert lines[8].split() == ["low", "0.20", "0.2100", "0.250", "0.220", "2.5x", "1,500"]
    assert lines[9].strip().startswith("base rate 0.100 (held out)")
    assert strictest_number(choice_half.iloc[2:], min_segment_size=50, confidence=0.95) is None  # too small


def test_an_uplift_segments_levels_show_share_threshold_held_out_uplift_and_expected_gain() -> None:
    from segments_lib.job.level_report import format_uplift_levels

    promises = {  # thresholds.json of an uplift run, out of share order
        "medium": {"share": 0.3, "threshold": 0.031, "uplift": 0.05, "uplift_lower": 0.012, "uplift_upper": 0.09},
        "high": {"share": 0.1, "threshold": 0.0712, "uplift": 0.081, "uplift_lower": 0.01, "uplift_upper": 0.15},
        "low": {"share": 0.5, "threshold": 0.002, "uplift": None, "uplift_lower": None, "uplift_upper": None},
    }
    lines = format_uplift_levels(promises, {"high": 120, "medium": 360}, 0.0094, indent="")
    assert [line.split() for line in lines[:4]] == [
        ["level", "share", "threshold", "uplift", "95%", "CI", "members", "+conversions"],
        # +9.7 = 0.081 × 120 members, +18.0 = 0.05 × 360: conversions gained if every member is contacted.
        ["high", "10%", "0.0712", "+0.081", "[+0.010,", "+0.150]", "120", "+9.7"],
        ["medium", "30%", "0.0310", "+0.050", "[+0.012,", "+0.090]", "360", "+18.0"],
        ["low", "50%", "0.0020", "-", "-", "-", "-"],  # no arm comparison held out, no members counted
    ]
    assert lines[4].startswith("holdout Qini coefficient 0.0094 (random targeting: 0)")
