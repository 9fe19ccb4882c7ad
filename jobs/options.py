"""The command line the table-writing jobs share: the module docstring as help, and the config overlay."""

from __future__ import annotations

import argparse


def job_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser that prints `doc` (the job's module docstring) as written, with the `--conf` option."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conf", default=None, help="config overlay (name in conf/ or a path)")
    return parser
