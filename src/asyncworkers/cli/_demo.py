"""``asyncworkers demo``: the command's parser. The demo itself is in ``_demo_run``, imported
when the command runs: it loads asyncio, anyio and rich, which ``asyncworkers --help`` must not.
"""

from __future__ import annotations

import argparse

from ._args import Commands, positive_int

__all__ = ["add_command"]


def add_command(commands: Commands) -> None:
    """Add ``demo`` to the ``asyncworkers`` parser."""
    demo = commands.add_parser(
        "demo",
        help="run a mixed demo workload and show progress and metrics",
        description=(
            "Run a mixed workload (async, thread and process jobs with priorities, a "
            "cancellation, a retry and a timeout) and print the runtime's metrics."
        ),
    )
    demo.add_argument(
        "--jobs", type=positive_int, default=120, help="number of I/O-like jobs (default: 120)"
    )
    demo.add_argument(
        "--workers", type=positive_int, default=8, help="jobs running at once (default: 8)"
    )
    demo.add_argument(
        "--seed", type=int, default=1, help="seed of the random job durations (default: 1)"
    )
    demo.set_defaults(handler=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo_run import run_command

    return run_command(args)
