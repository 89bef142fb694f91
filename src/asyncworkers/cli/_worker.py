"""``asyncworkers worker``: run a :class:`~asyncworkers.store.Manager` until a signal.

The first SIGTERM (or SIGINT) stops claiming and drains within ``--shutdown-grace``; the
jobs still running then go back to the queue without an attempt counted. A second signal
skips the rest of the drain.
"""

from __future__ import annotations

import argparse
import signal
import sys

import asyncworkers as aw

from ._args import Commands, positive_int
from ._ops_args import add_ops_options, ops_settings
from ._store_args import add_store_option, age, positive_seconds, run_with_store, task_registry

__all__ = ["add_command", "reach"]


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
    worker.add_argument(
        "--retention", type=age, default=None, metavar="AGE",
        help="delete jobs that ended (succeeded, dead, cancelled) more than AGE ago, "
        "e.g. 7d; now and then, in batches (default: keep them)",
    )  # fmt: skip
    worker.add_argument(
        "--no-periodic", dest="periodic", action="store_false",
        help="do not enqueue the periodic tasks' runs (other workers do)",
    )  # fmt: skip
    add_ops_options(worker)
    worker.set_defaults(handler=_cmd_worker)


def _cmd_worker(args: argparse.Namespace) -> int:
    import logging  # here: --help must not load it

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def body(store: aw.store.Store) -> int:
        if not await reach(store):
            return 0  # stopped by a signal before the database came back
        manager = aw.store.Manager(
            store,
            args.tasks,
            concurrency=args.concurrency,
            queues=args.queues,
            lease=args.lease,
            poll_interval=args.poll_interval,
            shutdown_grace=args.shutdown_grace,
            handle_signals=True,
            periodic=args.periodic,
            retention=args.retention,
            **ops_settings(args),
        )
        async with manager:
            served = "" if manager.ops is None or args.http is None else f", http {manager.ops.url}"
            print(
                f"worker {manager.worker}: {len(args.tasks)} task(s), concurrency "
                f"{args.concurrency}, store {args.store}{served}",
                file=sys.stderr,
                flush=True,
            )
            await manager.wait_stopping()
        m = manager.metrics()
        print(
            f"worker {manager.worker} stopped: claimed {m.claimed}, succeeded {m.succeeded}, "
            f"retried {m.retried}, dead {m.dead}, released {m.released}, "
            f"lease losses {m.lease_losses}",
            file=sys.stderr,
            flush=True,
        )
        return 0

    return run_with_store("worker", args.store, body, opened=False)


# Longest wait between two tries to reach a database that is away.
_MAX_RETRY_WAIT = 30.0


async def reach(store: aw.store.Store, first_wait: float = 1.0) -> bool:
    """Open the store; while it is away (a transient StoreUnavailable), say so on one line
    per try and try again with backoff rather than exit (a worker under a supervisor would
    crash-loop). False when SIGTERM/SIGINT came first. A mistake that waiting does not fix
    (a missing folder) raises at once: one line, exit status 2."""
    import anyio  # here: --help must not load anyio and asyncio

    wait = first_wait
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        while True:
            try:
                await store.open()
            except aw.store.StoreUnavailable as exc:
                if not exc.transient:
                    raise
                print(f"asyncworkers worker: {exc}; trying again in {wait:g} s",
                      file=sys.stderr, flush=True)  # fmt: skip
            else:
                return True
            with anyio.move_on_after(wait):
                async for _ in signals:
                    return False
            wait = min(wait * 2, _MAX_RETRY_WAIT)
