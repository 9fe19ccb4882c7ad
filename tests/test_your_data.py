"""docs/your-data.md, executed as written: a CSV export with its own column names, day-first local
times in Europe/Berlin, imported, dry-run, one night, and the membership read back without Spark.

The expectations come from the export file itself (row count, the newest row's wall-clock time read
with zoneinfo), not from the code under test.
"""

from __future__ import annotations

import ast
import csv
import re
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from deltalake import DeltaTable

from tests.test_walkthrough import PROJECT_ROOT, _env, run_step, walkthrough_steps

YOUR_DATA = PROJECT_ROOT / "docs" / "your-data.md"


def test_the_page_has_every_step_from_export_to_membership() -> None:
    steps = walkthrough_steps(YOUR_DATA.read_text())
    assert [s.kind for s in steps] == ["python", "file", "file", "run", "run", "run", "python"]
    commands = " ".join(s.body for s in steps if s.kind == "run")
    for module in ("jobs.import_events", "jobs.check_segments", "jobs.nightly"):
        assert f"python -m {module}" in commands
    assert "format: csv" in steps[1].body and "source_timezone: Europe/Berlin" in steps[1].body


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_your_data_runs_as_written(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace-your-data"
    workspace.mkdir()
    env = _env(workspace)
    outputs = [output for step in walkthrough_steps(YOUR_DATA.read_text())
               if (output := run_step(step, workspace, env)) is not None]
    _, imported, checked, night, members = outputs

    with open(workspace / "export" / "events.csv", newline="") as export:
        rows = list(csv.DictReader(export))
    assert re.search(rf"rows read\s+{len(rows):,}\n", imported), imported[-2000:]  # every export row reached the import
    assert "buyers_next_week" in checked and "run date 2026-06-01" in checked
    assert "buyers_next_week" in night

    # The newest export row is Berlin summer time (UTC+2): stored two hours earlier, in UTC.
    newest_local = max(datetime.strptime(r["happened_at"], "%d/%m/%Y %H:%M:%S") for r in rows)
    newest_utc = newest_local.replace(tzinfo=ZoneInfo("Europe/Berlin")).astimezone(timezone.utc)
    validated = DeltaTable(str(workspace / "tables" / "events_validated")).to_pyarrow_table()
    stored = max(validated.column("event_time").to_pylist())
    assert (stored if stored.tzinfo else stored.replace(tzinfo=timezone.utc)) == newest_utc
    assert validated.num_rows <= len(rows)

    (segment, scored, to_target), = ast.literal_eval(members.strip().splitlines()[-1])
    assert segment == "buyers_next_week" and scored > 0 and 0 <= to_target <= scored
