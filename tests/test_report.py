"""jobs.report: the library's numbers by hand, then the real page of a trained workspace in headless Chromium.

The browser half opens the file the job wrote with Debian's `chromium` (installed by `make install-dev` when
we are root): a screenshot that is not blank, a DOM where every chart div holds plotly's rendered SVG, and
no console message at all (Chromium logs every console call and uncaught error as a `:CONSOLE` line with
`--enable-logging=stderr`; a planted error proves the check sees one).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from jobs import report as report_job
from segments_lib.report import data, page
from segments_lib.report.data import LevelMark, ReportInput
from tests.conftest import DEMO_END, SHARED_WORKSPACE_GROUP, TRAINED_NIGHTS
from tests.support.workspaces import restored_afterwards

pytestmark = SHARED_WORKSPACE_GROUP  # built once, on one worker (tests/conftest.py)

D1, D2, D3 = date(2026, 5, 30), date(2026, 5, 31), date(2026, 6, 1)
SEGMENTS = ("engagement_booster", "likely_to_purchase")  # tests/support/segments.two_small_segments
CHART_KINDS = ("curve", "members", "promise", "drift", "churn")


# --- the library, on frames small enough to check by hand -------------------------------------------------

def tiny_curve() -> pd.DataFrame:
    # Stored out of order on purpose: the curve is read by threshold.
    return pd.DataFrame({
        "segment": ["s"] * 4, "point": [2, 0, 3, 1], "threshold": [0.5, 0.1, 0.8, 0.3],
        "expected_precision": [0.40, 0.10, 0.70, 0.25], "precision_lower": [0.30, 0.08, 0.50, 0.20],
        "expected_size_today": [200, 1000, 50, 500],
    })


def tiny_runs() -> pd.DataFrame:
    """Three nights of segment s (the first without a comparison) and one of t; D3's row of s ran twice."""
    rows = [
        (D1, "s", None, None, None, 0.01),
        (D2, "s", 30, 10, 0.5, 0.02),
        (D3, "s", 99, 99, 0.01, 0.99),  # the earlier, replaced run of D3
        (D3, "s", 5, 15, 0.8, 0.04),
        (D3, "t", 1, 2, 0.9, None),
    ]
    frame = pd.DataFrame(rows, columns=["run_date", "segment", "membership_entered", "membership_exited",
                                        "membership_jaccard", "score_psi"])
    frame["finished_at"] = pd.to_datetime(["2026-05-30 01:00", "2026-05-31 01:00", "2026-06-01 01:00",
                                           "2026-06-01 02:00", "2026-06-01 01:00"])
    frame["holdout_auc_pr"] = 0.5
    frame["model_version"] = 1
    return frame


def test_base_rate_is_the_precision_of_the_lowest_threshold() -> None:
    assert data.base_rate(tiny_curve()) == pytest.approx(0.10)  # threshold 0.1 is the lowest
    assert data.base_rate(tiny_curve().iloc[0:0]) is None
    assert list(data.curve(tiny_curve(), "s")["threshold"]) == [0.1, 0.3, 0.5, 0.8]


def test_level_marks_and_the_curve_point_each_threshold_selects() -> None:
    run = {"precision_level": "medium", "threshold": 0.5, "threshold_high": 0.8, "threshold_medium": 0.5,
           "threshold_low": float("nan"), "members_high": 50, "members_medium": 200, "members_low": 0,
           "member_count": 200}
    assert data.level_marks(run) == [LevelMark("high", 0.8, 50, False), LevelMark("medium", 0.5, 200, True)]
    # A numeric level (p25) is the segment's own: its members are member_count.
    numeric = {**run, "precision_level": "p25", "threshold": 0.3, "threshold_high": None, "threshold_medium": None,
               "member_count": 500}
    assert data.level_marks(numeric) == [LevelMark("p25", 0.3, 500, True)]
    assert data.mark_point(tiny_curve(), 0.5) == {"reach": 200.0, "precision": 0.40, "lower": 0.30}
    assert data.mark_point(tiny_curve(), 0.45)["reach"] == 200.0  # the lowest curve threshold at or above
    assert data.mark_point(tiny_curve(), 0.9) is None


def test_churn_and_psi_series_keep_one_row_a_night_oldest_first() -> None:
    churn = data.churn_series(tiny_runs(), "s", D3)
    # D1 had no earlier night (null Jaccard): left out; D3 keeps its later run (5 in, 15 out, 0.8).
    assert churn.to_dict("list") == {"run_date": [D2, D3], "entered": [30, 5], "exited": [10, 15],
                                     "jaccard": [0.5, 0.8]}
    assert data.churn_series(tiny_runs(), "s", D3, nights=1)["run_date"].tolist() == [D3]
    assert data.churn_series(tiny_runs(), "s", D2)["run_date"].tolist() == [D2]  # nothing after the night
    assert data.psi_series(tiny_runs(), "s", D3)["score_psi"].tolist() == [0.01, 0.02, 0.04]
    assert data.psi_series(tiny_runs(), "t", D3).empty
    assert data.segments_on(tiny_runs(), D3) == ["s", "t"]


def test_promise_history_keeps_the_newest_evaluation_as_known_that_night() -> None:
    backtest = pd.DataFrame([
        ("s", D1, D2, "medium", 0.4, 0.3, 0.20, 10, False),  # re-evaluated on D3 below
        ("s", D1, D3, "medium", 0.4, 0.3, 0.35, 20, True),
        ("s", D2, D3, "medium", 0.4, 0.3, 0.45, 20, True),
        ("s", D2, date(2026, 6, 2), "medium", 0.4, 0.3, 0.99, 20, True),  # evaluated after the night
        ("t", D1, D3, "low", 0.2, 0.1, 0.5, 5, True),
    ], columns=["segment", "scored_date", "evaluated_on", "level", "promised_precision", "promised_lower_bound",
                "realized_precision", "members", "meets_lower_bound"])
    history = data.promise_history(backtest, "s", D3)
    assert history[["scored_date", "realized_precision", "members"]].to_dict("list") == {
        "scored_date": [D1, D2], "realized_precision": [0.35, 0.45], "members": [20, 20]}
    assert data.promise_history(backtest.iloc[0:0], "s", D3).empty


def test_top_drifting_reasons_and_auc_pr_lift() -> None:
    drift = pd.DataFrame([
        (D3, "s", "score", True, 0.9), (D3, "s", "a", False, 0.1), (D3, "s", "b", False, 0.3),
        (D3, "s", "c", False, float("nan")), (D2, "s", "d", False, 5.0),
    ], columns=["run_date", "segment", "column_name", "is_score", "psi"])
    assert data.top_drifting(drift, "s", D3).to_dict("list") == {"column_name": ["b", "a"], "psi": [0.3, 0.1]}
    reasons = pd.DataFrame({"segment": ["s", "s", "s", "t"], "reason": ["x", "y", "z", "x"],
                            "members": [6, 3, 1, 9]})
    assert data.top_reasons(reasons, "s", top=2).to_dict("list") == {
        "reason": ["x", "y"], "members": [6, 3], "share": [0.6, 0.3]}  # shares of the 10 members with a reason
    assert data.top_reasons(None, "s") is None
    assert data.auc_pr_lift(0.3, 0.1) == pytest.approx(3.0)
    assert data.auc_pr_lift(None, 0.1) is None


def test_the_page_embeds_plotly_once_and_says_what_is_missing() -> None:
    runs = tiny_runs().assign(status="ok", precision_level="medium", threshold=0.5, threshold_high=0.8,
                              threshold_medium=0.5, threshold_low=None, members_high=50, members_medium=200,
                              members_low=None, member_count=200, eligible_count=1000)
    html = page.render(ReportInput(D3, runs, tiny_curve(), pd.DataFrame(), pd.DataFrame(), None))
    assert html.count("<script type=\"text/javascript\">/**\n* plotly.js") == 1  # the bundle, inline
    # Nothing to fetch: no script or stylesheet is loaded from elsewhere (the bundle's own text names
    # plotly's CDN for map data, which no chart here uses).
    assert re.findall(r"<script[^>]*\bsrc=|<link\b", html) == []
    ids = re.findall(r'id="(chart-[^"]+)"', html)
    # s: a curve, levels, drift and churn, no backtest yet. t: levels and churn, but no curve rows (the
    # curve frame is s's) and no score PSI.
    assert ids == ["chart-s-curve", "chart-s-members", "chart-s-drift", "chart-s-churn",
                   "chart-t-members", "chart-t-churn"]
    assert html.count("reasons not available") == 2
    assert "no night judged yet" in html
    assert "base rate <b>0.100</b>" in html


# --- the job on the session's trained workspace, and the page in a real browser ------------------------

def chromium_binary() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("Debian's chromium is not installed and we are not root: "
                    "apt-get install --no-install-recommends chromium (make install-dev does it as root)")
    pytest.fail("chromium is missing although we are root: make install-dev installs it")


def run_chromium(*flags: str, url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         "--window-size=1400,2000", "--virtual-time-budget=5000", *flags, url],
        capture_output=True, text=True, timeout=120, check=True)


def console_lines(stderr: str) -> list[str]:
    """Chromium's lines for console messages and uncaught errors (every level is logged as INFO:CONSOLE)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.fixture(scope="module")
def written(spark, trained_workspace, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The job run on the trained workspace for its last night with default settings, the workspace put back
    afterwards (the job writes into it and logs artifacts to its MLflow runs)."""
    import mlflow

    from segments_lib.store import tables

    cfg = trained_workspace
    assert TRAINED_NIGHTS[-1] == DEMO_END
    runs = tables.read_output(spark, cfg, tables.SEGMENT_RUNS)
    run_ids = {r.segment: r.mlflow_run_id for r in runs.where(runs.run_date == DEMO_END).collect()}
    kept = tmp_path_factory.mktemp("report") / "segment_report.html"
    with pytest.MonkeyPatch.context() as patch, restored_afterwards(spark, cfg.workspace.path):
        patch.setenv("SEGMENTS_WORKSPACE", str(cfg.workspace.path))
        code = report_job.main(["--date", DEMO_END.isoformat()])
        default = cfg.output.root.path / "reports" / f"segment_report_{DEMO_END}.html"
        exists = default.is_file()
        if exists:
            shutil.copyfile(default, kept)
        client = mlflow.MlflowClient(tracking_uri=cfg.mlflow.tracking_uri)
        artifacts = {segment: [a.path for a in client.list_artifacts(run_id, "reports")]
                     for segment, run_id in run_ids.items()}
    return {"code": code, "default_written": exists, "file": kept, "artifacts": artifacts}


def test_the_job_writes_next_to_the_tables_and_logs_to_each_run(written) -> None:
    assert written["code"] == report_job.EXIT_OK
    assert written["default_written"]
    name = f"reports/segment_report_{DEMO_END}.html"
    assert written["artifacts"] == {segment: [name] for segment in SEGMENTS}


def test_the_page_holds_every_chart_of_both_segments(written) -> None:
    html = Path(written["file"]).read_text(encoding="utf-8")
    # Three nights (05-25, 05-31, 06-01), P3 = 7d: on 06-01 each segment has its curve and levels, the
    # judged 05-25 promise, PSI on the scored nights and a churn comparison with 05-31.
    ids = re.findall(r'id="(chart-[^"]+)"', html)
    assert ids == [page.chart_id(segment, kind) for segment in SEGMENTS for kind in CHART_KINDS]
    assert html.count("reasons not available") + html.count("Top reasons among members") >= 2


def test_chromium_renders_the_page_without_console_errors(written, tmp_path: Path) -> None:
    from PIL import Image

    url = Path(written["file"]).as_uri()
    png = tmp_path / "report.png"
    shot = run_chromium(f"--screenshot={png}", url=url)
    dom = run_chromium("--dump-dom", url=url)
    assert console_lines(shot.stderr) == [] and console_lines(dom.stderr) == []

    image = Image.open(png).convert("RGB")
    assert image.size == (1400, 2000)
    # A blank or unstyled page has a handful of colours; lines, bars, text antialiasing give hundreds.
    assert len(image.getcolors(maxcolors=1 << 20)) > 200

    html = Path(written["file"]).read_text(encoding="utf-8")
    ids = re.findall(r'id="(chart-[^"]+)"', html)
    starts = [dom.stdout.index(f'id="{chart}"') for chart in ids]
    for chart, start, end in zip(ids, starts, [*starts[1:], len(dom.stdout)], strict=True):
        assert 'class="main-svg"' in dom.stdout[start:end], f"{chart} was not drawn"
    for segment in SEGMENTS:
        assert f"<h2>{segment}</h2>" in dom.stdout


def test_the_console_check_sees_an_uncaught_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>throw new Error('planted');</script></body></html>")
    lines = console_lines(run_chromium("--dump-dom", url=broken.as_uri()).stderr)
    assert len(lines) == 1 and "Uncaught Error: planted" in lines[0]


def test_a_date_without_runs_exits_2_with_one_line(spark, trained_workspace, monkeypatch, capsys) -> None:
    monkeypatch.setenv("SEGMENTS_WORKSPACE", str(trained_workspace.workspace.path))
    assert report_job.main(["--date", "2026-05-26", "--no-mlflow"]) == report_job.EXIT_INVALID
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["report: segment_runs has no run on 2026-05-26; its newest run dates: "
                   "2026-06-01, 2026-05-31, 2026-05-25"]
