"""``asyncworkers worker``: run a :class:`~asyncworkers.store.Manager` until a signal.

The first SIGTERM (or SIGINT) stops claiming and drains within ``--shutdown-grace``; the
jobs still running then go back to the queue without an attempt counted. A second signal
skips the rest of the drain.
"""

from __future__ import annotations

import argparse
import logging
import sys

import asyncworkers as aw

from ._args import Commands, positive_int
from ._store_args import add_store_option, run_with_store, task_registry

__all__ = ["add_command", "positive_seconds"]


def positive_seconds(text: str) -> float:
    """A number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


def add_command(commands: Commands) -> None:
    """Add ``worker`` to the ``asyncworkers`` parser."""
    worker = commands.add_parser(
        "worker",
        help="run jobs from a durable store until SIGTERM",
        description="Claim jobs from a store, run them, write their outcomes back.",
    )
    add_store_option(worker)
    worker.add_argument(
        "--tasks",
        type=task_registry,
        required=True,
        metavar="MODULE:REGISTRY",
        help="the aw.store.TaskRegistry of the tasks to run, e.g. myapp.jobs:tasks",
    )
    worker.add_argument(
        "--concurrency", type=positive_int, default=10, help="jobs at once (default: 10)"
    )
    worker.add_argument(
        "--lease",
        type=positive_seconds,
        default=aw.store.DEFAULT_LEASE,
        help=f"seconds a claim lasts without heartbeat (default: {aw.store.DEFAULT_LEASE:g})",
    )
    worker.add_argument(
        "--queue",
        action="append",
        dest="queues",
        metavar="Q",
        help="take jobs from this queue (repeat for more; default: every queue)",
    )
    worker.add_argument(
        "--shutdown-grace",
        type=positive_seconds,
        default=30.0,
        help="seconds running jobs get to finish on SIGTERM (default: 30)",
    )
    worker.add_argument(
        "--poll-interval",
        type=positive_seconds,
        default=1.0,
        help="longest wait between looks for due jobs and expired leases (default: 1)",
    )
    worker.set_defaults(handler=_cmd_worker)


def _cmd_worker(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def body(store: aw.store.Store) -> int:
        manager = aw.store.Manager(
            store,
            args.tasks,
            concurrency=args.concurrency,
            queues=args.queues,
            lease=args.lease,
            poll_interval=args.poll_interval,
            shutdown_grace=args.shutdown_grace,
            handle_signals=True,
        )
        async with manager:
            print(
                f"worker {manager.worker}: {len(args.tasks)} task(s), concurrency "
                f"{args.concurrency}, store {args.store}",
                file=sys.stderr,
                flush=True,
            )
            await manager.wait_stopping()
        m = manager.metrics()
        print(
            f"worker {manager.worker} stopped: claimed {m.claimed}, succeeded {m.succeeded}, "
            f"retried {m.retried}, dead {m.dead}, released {m.released}",
            file=sys.stderr,
            flush=True,
        )
        return 0

    return run_with_store("worker", args.store, body)
