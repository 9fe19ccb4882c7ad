"""The segment report as one self-contained HTML page: plotly figures from `report.data`, plotly's JS inline.

The page loads nothing from the network (the plotly bundle is embedded once, in the head), so it opens
from a disk, a mail attachment or an MLflow artifact view alike. Nothing here reads a table.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from datetime import date

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from segments_lib.language.definitions import NAMED_LEVELS
from segments_lib.report import data
from segments_lib.report.data import LevelMark, ReportInput

RESULTS_LINK = "benchmarks/RESULTS.md#model-quality"
CHART_HEIGHT = 320
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 19px; margin-top: 32px; border-bottom: 2px solid #ddd; }
h3 { font-size: 14px; margin: 10px 0 2px; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 8px 24px; }
.facts { font-size: 14px; } .note { color: #666; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; } td, th { padding: 2px 10px; border-bottom: 1px solid #eee; }
"""


def chart_id(segment: str, chart: str) -> str:
    """A DOM id for one chart of one segment (segment names are YAML keys: keep letters, digits, _ and -)."""
    return f"chart-{re.sub(r'[^A-Za-z0-9_-]', '-', segment)}-{chart}"


def _layout(title: str, x_title: str, y_title: str, nights: bool = False) -> dict[str, object]:
    # The panel's heading names the chart; plotly's own title would repeat it. Nights are discrete
    # run dates, so a history axis is categorical: a date axis draws one night as hours around midnight.
    xaxis: dict[str, object] = {"title": {"text": x_title}}
    if nights:
        xaxis["type"] = "category"
    return {"meta": {"title": title}, "height": CHART_HEIGHT, "margin": {"l": 60, "r": 50, "t": 20, "b": 50},
            "xaxis": xaxis, "yaxis": {"title": {"text": y_title}}, "legend": {"orientation": "h", "y": -0.3},
            "template": "plotly_white"}


def _nights(values: pd.Series) -> list[str]:
    return [str(v) for v in values]


def curve_figure(curve: pd.DataFrame, marks: list[LevelMark]) -> go.Figure:
    """Expected precision and its lower bound against tonight's members, each level's threshold marked."""
    fig = go.Figure()
    fig.add_scatter(x=curve["expected_size_today"], y=curve["expected_precision"], mode="lines",
                    name="expected precision", customdata=curve["threshold"],
                    hovertemplate="members %{x}<br>precision %{y:.3f}<br>threshold %{customdata:.4f}")
    fig.add_scatter(x=curve["expected_size_today"], y=curve["precision_lower"], mode="lines",
                    name="95 % lower bound", line={"dash": "dot"})
    points = [(mark, data.mark_point(curve, mark.threshold)) for mark in marks]
    points = [(mark, point) for mark, point in points if point is not None]
    if points:
        fig.add_scatter(x=[p["reach"] for _, p in points], y=[p["precision"] for _, p in points],
                        mode="markers+text", name="levels", marker={"size": 10, "color": "#d62728"},
                        text=[f"{m.level} ≥ {m.threshold:.3f}" for m, _ in points], textposition="top right")
    fig.update_layout(**_layout("Precision vs reach (tonight)", "members tonight at threshold", "precision"))
    return fig


def members_figure(run: Mapping[str, object]) -> go.Figure:
    """Members per named level (0 where a level has no threshold tonight: nobody reaches it), and the
    configured level's count when it is a number; the configured level is orange."""
    configured = str(run.get("precision_level") or "")
    levels = list(NAMED_LEVELS)
    counts = [int(run[f"members_{lv}"]) if data.present(run.get(f"members_{lv}")) else 0 for lv in levels]
    if configured and configured not in NAMED_LEVELS:
        levels.append(configured)
        counts.append(int(run["member_count"]) if data.present(run.get("member_count")) else 0)
    fig = go.Figure(go.Bar(x=levels, y=counts, text=counts, textposition="outside",
                           marker={"color": ["#ff7f0e" if lv == configured else "#1f77b4" for lv in levels]}))
    fig.update_layout(**_layout(f"Members per level (configured: {configured or '-'})", "level", "members"))
    return fig


def promise_figure(history: pd.DataFrame) -> go.Figure:
    """Promised precision, its lower bound and the realized precision per judged night, per level."""
    fig = go.Figure()
    for level, rows in history.groupby("level", sort=True):
        fig.add_scatter(x=_nights(rows["scored_date"]), y=rows["realized_precision"], mode="lines+markers",
                        name=f"{level}: realized")
        fig.add_scatter(x=_nights(rows["scored_date"]), y=rows["promised_precision"], mode="lines",
                        name=f"{level}: promised", line={"dash": "dash"})
        fig.add_scatter(x=_nights(rows["scored_date"]), y=rows["promised_lower_bound"], mode="lines",
                        name=f"{level}: lower bound", line={"dash": "dot"})
    fig.update_layout(**_layout("Promised vs realized precision", "scored night", "precision", nights=True))
    return fig


def drift_figure(psi: pd.DataFrame) -> go.Figure:
    """Score PSI over the nights (tonight's most drifted features are a table beside it)."""
    fig = go.Figure()
    fig.add_scatter(x=_nights(psi["run_date"]), y=psi["score_psi"], mode="lines+markers", name="score PSI")
    fig.update_layout(**_layout("Drift: score PSI by night", "night", "PSI", nights=True))
    # The usual reading: below 0.1 stable, 0.1-0.25 a shift worth a look, above 0.25 a real change.
    fig.add_hline(y=0.1, line={"dash": "dot", "color": "#999"})
    return fig


def churn_figure(churn: pd.DataFrame) -> go.Figure:
    """Users entering and leaving the segment each night (bars), and the Jaccard overlap with the night
    before (line, right axis)."""
    fig = go.Figure()
    fig.add_bar(x=_nights(churn["run_date"]), y=churn["entered"], name="entered")
    fig.add_bar(x=_nights(churn["run_date"]), y=churn["exited"], name="exited")
    fig.add_scatter(x=_nights(churn["run_date"]), y=churn["jaccard"], mode="lines+markers", name="Jaccard", yaxis="y2")
    fig.update_layout(**_layout("Membership churn", "night", "users", nights=True))
    fig.update_layout(yaxis2={"title": {"text": "Jaccard"}, "overlaying": "y", "side": "right", "range": [0, 1]})
    return fig


def _chart(fig: go.Figure, div_id: str) -> str:
    # The JS is in the head once: each chart only brings its div and its data.
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displayModeBar": False, "responsive": True})


def _fmt(value: object, digits: int = 3) -> str:
    if not data.present(value):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else html.escape(str(value))


def _table(frame: pd.DataFrame, headers: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><tr>{head}</tr>{body}</table>"


def _panel(title: str, chart: str | None, empty_note: str, extra: str = "") -> str:
    inner = chart if chart is not None else f'<p class="note">{html.escape(empty_note)}</p>'
    return f"<div><h3>{html.escape(title)}</h3>{inner}{extra}</div>"


def segment_section(report: ReportInput, segment: str) -> str:
    """One segment's part of the page: the facts line, five charts (or a note where a chart has no data
    yet), model quality and the top reasons."""
    day, nights = report.run_date, report.history_nights
    run = data.run_row(report.runs, segment, day)
    curve = data.curve(report.thresholds, segment)
    marks = data.level_marks(run)
    rate = data.base_rate(curve)
    history = data.promise_history(report.backtest, segment, day, nights)
    psi = data.psi_series(report.runs, segment, day, nights)
    top = data.top_drifting(report.drift, segment, day)
    churn = data.churn_series(report.runs, segment, day, nights)
    reasons = data.top_reasons(report.reasons, segment)
    lift = data.auc_pr_lift(run.get("holdout_auc_pr"), rate)

    status = html.escape(str(run.get("status") or "-"))
    reason = f" — {html.escape(str(run['reason']))}" if run.get("reason") else ""
    facts = (f'<p class="facts">status <b>{status}</b>{reason} · eligible {_fmt(run.get("eligible_count"))} · '
             f'members <b>{_fmt(run.get("member_count"))}</b> at level {_fmt(run.get("precision_level"))} '
             f'(threshold {_fmt(run.get("threshold"), 4)}) · control group {_fmt(run.get("control_count"))} · '
             f'base rate <b>{_fmt(rate)}</b> · model {_fmt(run.get("model_name"))} v{_fmt(run.get("model_version"))}'
             f'</p>')
    panels = [
        _panel("Precision vs reach", _chart(curve_figure(curve, marks), chart_id(segment, "curve"))
               if not curve.empty else None, "no threshold curve tonight (no model scored)"),
        _panel("Members per level", _chart(members_figure(run), chart_id(segment, "members")), ""),
        _panel("Promised vs realized precision", _chart(promise_figure(history), chart_id(segment, "promise"))
               if not history.empty else None,
               "no night judged yet: a night's promise is checked once its prediction window has passed"),
        _panel("Drift", _chart(drift_figure(psi), chart_id(segment, "drift")) if not psi.empty else None,
               "no score PSI yet",
               extra=("<p class=\"note\">most drifted features tonight (PSI):</p>"
                      + _table(top, ["feature", "PSI"])) if not top.empty else ""),
        _panel("Membership churn", _chart(churn_figure(churn), chart_id(segment, "churn")) if not churn.empty
               else None, "no earlier night to compare with"),
    ]
    lift_text = f" — {lift:.2f}× the base rate (a random score's AUC-PR)" if lift is not None else ""
    quality = (f'<div><h3>Model quality</h3><p class="facts">holdout AUC-PR <b>{_fmt(run.get("holdout_auc_pr"))}</b>'
               f'{lift_text}.</p><p class="note">Baselines (recency, frequency, BG/NBD, LightGBM) on '
               f'the demo and Online Retail: <a href="{RESULTS_LINK}">{RESULTS_LINK}</a> in the project.</p></div>')
    if reasons is None:
        reasons_html = '<p class="note">reasons not available</p>'
    elif reasons.empty:
        reasons_html = '<p class="note">no member has a reason tonight</p>'
    else:
        reasons_html = _table(reasons, ["reason_1", "members", "share"])
    panels += [quality, f"<div><h3>Top reasons among members</h3>{reasons_html}</div>"]
    return (f'<section id="segment-{html.escape(segment)}"><h2>{html.escape(segment)}</h2>{facts}'
            f'<div class="grid">{"".join(panels)}</div></section>')


def render(report: ReportInput, source: str = "") -> str:
    """The whole report for `report.run_date`: every segment with a run that night, by name."""
    segments = data.segments_on(report.runs, report.run_date)
    day = report.run_date.isoformat() if isinstance(report.run_date, date) else str(report.run_date)
    origin = f" from {html.escape(source)}" if source else ""
    sections = "".join(segment_section(report, segment) for segment in segments)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>Segment report {day}</title><style>{_STYLE}</style>"
            f'<script type="text/javascript">{get_plotlyjs()}</script></head>'
            f"<body><h1>Segment report — night {day}</h1>"
            f'<p class="note">{len(segments)} segments{origin}; history: the past {report.history_nights} nights. '
            f"Self-contained: opens offline.</p>{sections}</body></html>\n")
