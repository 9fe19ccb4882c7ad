"""The command line every job shares: the module docstring as help, the exit codes, and the overlay."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Mapping
from datetime import date

# The codes each job's main returns; a job lists the ones it can end with, in its --help.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
INVALID_MEANING = ("the job cannot start: bad arguments or config, or the environment (no Java, JARs that "
                   "cannot be resolved); one line names the setting to fix")


def iso_date(text: str) -> date:
    """An argparse type for YYYY-MM-DD dates whose error names the value and the format."""
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (use YYYY-MM-DD)") from exc


def job_parser(doc: str | None, prog: str, exit_codes: Mapping[int, str],
               conf_help: str | None = "config overlay: a path, or a name in conf/ (local, cluster)",
               conf_default: str | None = None) -> argparse.ArgumentParser:
    """A parser that prints `doc` (the job's module docstring) as written and ends with its exit codes.

    `conf_help=None` leaves out the `--conf` option (for a job that takes no config).
    """
    epilog = "exit codes:\n" + "\n".join(
        textwrap.fill(meaning, width=100, initial_indent=f"  {code}  ", subsequent_indent="     ")
        for code, meaning in sorted(exit_codes.items()))
    parser = argparse.ArgumentParser(prog=prog, description=doc, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    if conf_help is not None:
        parser.add_argument("--conf", default=conf_default, help=conf_help)
    return parser
