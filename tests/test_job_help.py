"""Every job's --help lists its flags and its exit codes, and exits 0 without starting Spark."""

from __future__ import annotations

import pytest

from jobs import (
    check_segments,
    demo,
    export,
    generate_demo_events,
    import_events,
    load_online_retail,
    nightly,
    report,
    sql_server,
)

# The flags a user reaches for in each job, and the exit codes each can end with (from its main).
JOBS = {
    "nightly": (nightly, ["--conf", "--date", "--from", "--to", "--segments", "--segments-file", "--retrain",
                          "--check"], ["0", "1", "2"]),
    "check_segments": (check_segments, ["--conf", "--date", "--segments", "--segments-file"], ["0", "1", "2"]),
    "export": (export, ["--conf", "--segment", "--level", "--date", "--format", "--to", "--changes",
                        "--include-control"], ["0", "1", "2"]),
    "demo": (demo, ["--conf", "--users", "--days", "--fresh", "--retrain", "--ground-truth"], ["0", "1", "2"]),
    "generate_demo_events": (generate_demo_events, ["--conf", "--users", "--days", "--end-date", "--seed",
                                                    "--truth-days", "--replicas"], ["0", "2"]),
    "import_events": (import_events, ["--conf", "--from", "--to", "--chunk-days", "--run-date"], ["0", "1", "2"]),
    "load_online_retail": (load_online_retail, ["--conf", "--source", "--events-path", "--run-date",
                                                "--max-rejected-share"], ["0", "1", "2"]),
    "report": (report, ["--conf", "--date", "--to", "--nights", "--no-mlflow"], ["0", "1", "2"]),
    "sql_server": (sql_server, ["--conf", "--host", "--port", "--database", "--auth", "--refresh-seconds",
                                "--register-only"], ["0", "2"]),
}


@pytest.mark.parametrize("name", sorted(JOBS))
def test_help_lists_flags_and_exit_codes(name: str, capsys) -> None:
    module, flags, codes = JOBS[name]
    with pytest.raises(SystemExit) as exited:
        module.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: jobs.{name} ")
    options = out.split("options:", 1)[1]
    for flag in flags:
        assert f"\n  {flag} " in options or f"\n  {flag}\n" in options, f"{name} --help lacks {flag}"
    codes_section = out.split("exit codes:\n", 1)[1]
    listed = [line.split()[0] for line in codes_section.splitlines() if line.startswith("  ") and
              not line.startswith("     ")]
    assert listed == codes


def test_a_bad_flag_exits_2_naming_it(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        nightly.main(["--retrain", "sometimes"])
    assert exited.value.code == 2
    assert "--retrain: invalid choice: 'sometimes'" in capsys.readouterr().err
