"""``asyncworkers load merge A.json B.json ... [--json OUT]``: add up the reports of load
generators that ran on several hosts (``asyncworkers load --json`` on each).

The histograms add exactly: the merged percentiles are those of one run over every request.
A report that cannot be read or does not fit the others is one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asyncworkers import loadgen

from ._args import CommandParser

__all__ = ["PROG", "main"]

PROG = "asyncworkers load merge"
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=PROG,
        description=(
            "Merge the JSON reports of load runs on several hosts into one: counts and HDR "
            "histograms added exactly, timelines second by second from each run's start."
        ),
    )
    parser.add_argument(
        "reports", nargs="+", type=Path, metavar="REPORT", help="asyncworkers load --json files"
    )
    parser.add_argument("--json", metavar="PATH", type=Path, help="write the merged report")
    return parser


def main(argv: Sequence[str]) -> int:
    """Merge, print the tables, write ``--json``; the exit status."""
    args = build_parser().parse_args(argv)
    reports: list[Any] = []
    for path in args.reports:
        try:
            reports.append(json.loads(path.read_text(encoding="utf-8")))
        except OSError as exc:
            return _fail(f"cannot read {str(path)!r}: {exc.strerror or exc}")
        except ValueError as exc:
            return _fail(f"{str(path)!r} is not JSON: {exc}")
    try:
        report = loadgen.merge_reports(reports, [str(p) for p in args.reports])
    except ValueError as exc:
        return _fail(str(exc))
    from rich.console import Console  # here: --help must not load rich

    report.render(Console())
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    return 0


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_USAGE
