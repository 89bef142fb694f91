"""``asyncworkers purge``: delete ended jobs older than an age, in batches."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

import asyncworkers as aw

from ._args import Commands
from ._store_args import add_store_option, age, run_with_store

__all__ = ["add_command"]

_ENDED = ("succeeded", "dead", "cancelled")


def add_command(commands: Commands) -> None:
    """Add ``purge`` to the ``asyncworkers`` parser."""
    purge = commands.add_parser(
        "purge",
        help="delete ended jobs (succeeded, dead, cancelled) older than an age",
        description=(
            "Delete the jobs that ended (succeeded, dead, cancelled) more than AGE ago, a "
            "batch of rows per transaction, so that workers are never held up by a long lock."
        ),
    )
    add_store_option(purge)
    purge.add_argument(
        "--older-than", type=age, required=True, metavar="AGE",
        help="how long ago they ended: 90s, 15m, 12h, 7d, 2w",
    )  # fmt: skip
    purge.add_argument(
        "--state", action="append", choices=_ENDED, default=None, dest="states",
        help="only jobs in this state (repeatable; default: all three)",
    )  # fmt: skip
    purge.set_defaults(handler=_cmd_purge)


def _cmd_purge(args: argparse.Namespace) -> int:
    # an age reaching back before 1970 deletes nothing, as a store's purge(0) does
    before = max(0.0, time.time() - args.older_than)
    states = tuple(args.states) if args.states else _ENDED

    async def body(store: aw.store.Store) -> list[int]:
        return [await store.purge(before, states)]

    done = run_with_store("purge", args.store, body)
    if isinstance(done, int):
        return done
    when = datetime.fromtimestamp(before, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    print(f"purged {done[0]} job(s) ({', '.join(states)}) that ended before {when}")
    return 0
