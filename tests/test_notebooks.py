"""Notebooks execute headless on demo data, so they cannot rot (each test owns one notebook)."""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from segments_lib.config import PROJECT_ROOT

NOTEBOOKS = PROJECT_ROOT / "notebooks"


def _execute(notebook: Path, env: dict[str, str], timeout: int = 300) -> nbformat.NotebookNode:
    nb = nbformat.read(notebook, as_version=4)
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
                       ).execute()
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb


def _outputs(nb: nbformat.NotebookNode) -> tuple[str, int]:
    text, images = [], 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text.append(output.get("text", ""))
            data = output.get("data", {})
            text.append(data.get("text/plain", ""))
            images += "image/png" in data
    return "\n".join(text), images


def _write_report_tables(root: Path) -> None:
    """Three nights of two segments, shaped like `segment_runs` and `segment_backtest`."""
    from deltalake import write_deltalake

    nights = [date(2026, 5, 1) + timedelta(days=i) for i in range(3)]
    runs = pd.DataFrame([
        {"run_date": night, "segment": segment, "status": "ok", "members_high": 10 + i, "members_medium": 40 + i,
         "members_low": 90 + i, "score_psi": 0.02 * i, "membership_entered": None if i == 0 else 5,
         "membership_exited": None if i == 0 else 4, "membership_jaccard": None if i == 0 else 0.8}
        for segment in ("alpha", "beta") for i, night in enumerate(nights)
    ])
    ledger = pd.DataFrame([
        {"segment": segment, "scored_date": night - timedelta(days=7), "evaluated_on": night, "level": level,
         "promised_precision": promised, "promised_lower_bound": promised - 0.1, "members": 20,
         "true_positives": 15, "realized_precision": 0.75 if level != "high" or i else 0.6,
         "meets_lower_bound": level != "high" or i > 0}
        for segment in ("alpha", "beta") for i, night in enumerate(nights)
        for level, promised in (("high", 0.8), ("medium", 0.6), ("low", 0.4))
    ])
    write_deltalake(str(root / "tables" / "segment_runs"), runs)
    write_deltalake(str(root / "tables" / "segment_backtest"), ledger)


@pytest.mark.timeout(600)
def test_segment_report_runs_on_a_workspace(tmp_path: Path) -> None:
    _write_report_tables(tmp_path)
    nb = _execute(NOTEBOOKS / "segment_report.ipynb", {"SEGMENTS_WORKSPACE": str(tmp_path)})
    text, images = _outputs(nb)
    assert "6 segment-nights, 18 ledger rows" in text
    assert "plotted 2 segment(s): alpha, beta" in text
    assert images == 2  # one four-panel figure per segment
    # high missed on the first of three nights in both segments: kept 2 of 3
    assert "0.666667" in text
