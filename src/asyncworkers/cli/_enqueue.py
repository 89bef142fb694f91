"""``asyncworkers enqueue``: add one job to a store and print its id."""

from __future__ import annotations

import argparse
import json
from typing import Any

import asyncworkers as aw

from ._args import Commands
from ._store_args import (
    add_store_option,
    fail,
    max_attempts,
    priority,
    run_with_store,
    seconds,
    store_text,
    task_registry,
)

__all__ = ["add_command", "json_object"]


def json_object(text: str) -> dict[str, Any]:
    """A JSON object: the task's keyword arguments."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object ({{...}}), got {text!r}")
    return value


def add_command(commands: Commands) -> None:
    """Add ``enqueue`` to the ``asyncworkers`` parser."""
    enqueue = commands.add_parser(
        "enqueue",
        help="add a job to a durable store and print its id",
        description="Add one job (TASK with JSON keyword arguments) to a store.",
    )
    add_store_option(enqueue)
    enqueue.add_argument("task", metavar="TASK", type=store_text, help="the task's registered name")
    enqueue.add_argument(
        "args", metavar="JSON", nargs="?", type=json_object, default=None,
        help='the keyword arguments, a JSON object (default: {})',
    )  # fmt: skip
    enqueue.add_argument(
        "--priority", type=priority, default=None,
        help="higher runs first (a 32-bit signed whole number)",
    )  # fmt: skip
    enqueue.add_argument(
        "--queue", type=store_text, default=None, help="the queue (default: the task's)"
    )
    enqueue.add_argument(
        "--key", type=store_text, default=None, help="idempotency key: one job per key"
    )
    enqueue.add_argument("--delay", type=seconds, default=None, help="run no sooner than this")
    enqueue.add_argument("--max-attempts", type=max_attempts, default=None)
    enqueue.add_argument(
        "--tasks",
        type=task_registry,
        default=None,
        metavar="MODULE:REGISTRY",
        help="check TASK and its arguments against this registry and use its defaults",
    )
    enqueue.set_defaults(handler=_cmd_enqueue)


def _cmd_enqueue(args: argparse.Namespace) -> int:
    # The job is checked before the store is opened: a value no store holds is one line,
    # exit 2, and the store is never touched (nor created).
    try:
        job = _job(args)
    except (TypeError, ValueError) as exc:
        return fail("enqueue", str(exc))

    async def body(store: aw.store.Store) -> int:
        (job_id,) = await store.enqueue_many([job])
        print(job_id)
        return 0

    return run_with_store("enqueue", args.store, body)


def _job(args: argparse.Namespace) -> aw.store.NewJob:
    registry: aw.store.TaskRegistry | None = args.tasks
    if registry is not None:
        return registry.job(
            args.task, args.args, priority=args.priority, queue=args.queue,
            delay=args.delay, max_attempts=args.max_attempts, key=args.key,
        )  # fmt: skip
    return aw.store.new_job(
        args.task, args.args,
        priority=0 if args.priority is None else args.priority,
        queue=args.queue or "default", delay=args.delay,
        max_attempts=args.max_attempts or 3, key=args.key,
    )  # fmt: skip
