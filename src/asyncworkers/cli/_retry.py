"""``asyncworkers retry``: give a dead (or cancelled) job a fresh set of attempts."""

from __future__ import annotations

import argparse
import sys

import asyncworkers as aw

from ._args import Commands
from ._store_args import add_store_option, job_id, run_with_store

__all__ = ["add_command"]


def add_command(commands: Commands) -> None:
    """Add ``retry`` to the ``asyncworkers`` parser."""
    retry = commands.add_parser(
        "retry",
        help="queue a dead or cancelled job again",
        description="Queue a dead or cancelled job again, with a fresh set of attempts.",
    )
    add_store_option(retry)
    retry.add_argument("id", metavar="ID", type=job_id, help="the job's id")
    retry.set_defaults(handler=_cmd_retry)


def _cmd_retry(args: argparse.Namespace) -> int:
    async def body(store: aw.store.Store) -> int:
        if await store.retry(args.id):
            print(f"job {args.id} is queued again")
            return 0
        record = await store.get(args.id)
        why = "no such job" if record is None else f"it is {record.state}, not dead or cancelled"
        print(f"asyncworkers retry: job {args.id} not retried: {why}", file=sys.stderr)
        return 1

    return run_with_store("retry", args.store, body)
