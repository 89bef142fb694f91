"""The parser of ``asyncworkers`` and its entry point.

Each command lives in a module of its own that adds its subparser with ``add_command`` and
sets ``handler``, a function of the parsed arguments that returns the exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .._version import __version__
from . import _demo, _enqueue, _inspect, _load, _load_merge, _purge, _retry, _status, _worker
from ._args import CommandParser, Commands

__all__ = ["build_parser", "main"]

# One entry per command, in the order ``--help`` lists them.
_COMMANDS: tuple[Callable[[Commands], None], ...] = (
    _demo.add_command,
    _load.add_command,
    _worker.add_command,
    _enqueue.add_command,
    _status.add_command,
    _inspect.add_commands,
    _retry.add_command,
    _purge.add_command,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``asyncworkers``: one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="asyncworkers",
        description="asyncworkers: an asyncio-native task runtime.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(
        dest="command", metavar="command", required=True, parser_class=CommandParser
    )
    for add_command in _COMMANDS:
        add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 when everything went as shown)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["load", "merge"]:  # `load` takes a URL; `merge` is no URL: no clash
        return _load_merge.main(argv[2:])
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)
