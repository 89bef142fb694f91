"""``asyncworkers enqueue``: add one job to a store and print its id, or many from JSON lines.

``--from FILE`` (``-`` for stdin) reads one argument object per line, checks every line
before anything is written, and adds them all through ``enqueue_many`` in one transaction:
a bad line is reported with its number and none of the file is added.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import IO, Any

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
        "--from", dest="source", metavar="FILE", default=None,
        help="add one job per line of FILE (- for stdin), each line a JSON object of "
        "keyword arguments; all or none are added, and the count is printed",
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
    enqueue.add_argument(
        "--delay", type=seconds, default=None, metavar="SECONDS",
        help="run no sooner than this many seconds from now (default: at once)",
    )  # fmt: skip
    enqueue.add_argument(
        "--max-attempts", type=max_attempts, default=None, metavar="N",
        help="runs before the job is dead, the first included (default: the task's "
        "retry attempts with --tasks, else 3)",
    )  # fmt: skip
    enqueue.add_argument(
        "--tasks",
        type=task_registry,
        default=None,
        metavar="MODULE:REGISTRY",
        help="check TASK and its arguments against this registry and use its defaults",
    )
    enqueue.set_defaults(handler=_cmd_enqueue)


def _cmd_enqueue(args: argparse.Namespace) -> int:
    if args.source is not None:
        return _cmd_enqueue_many(args)
    # The job is checked before the store is opened: a value no store holds is one line,
    # exit 2, and the store is never touched (nor created).
    try:
        job = _job_maker(args)(args.args)
    except (TypeError, ValueError) as exc:
        return fail("enqueue", str(exc))

    async def body(store: aw.store.Store) -> int:
        (job_id,) = await store.enqueue_many([job])
        print(job_id)
        return 0

    return run_with_store("enqueue", args.store, body)


def _cmd_enqueue_many(args: argparse.Namespace) -> int:
    if args.args is not None:
        return fail("enqueue", "give the arguments as JSON or with --from, not both")
    if args.key is not None:
        return fail("enqueue", "--key names one job; it cannot go with --from")
    try:
        jobs = _read_jobs(args.source, _job_maker(args))
    except (OSError, ValueError, TypeError) as exc:
        return fail("enqueue", str(exc))

    async def body(store: aw.store.Store) -> list[int]:
        return await store.enqueue_many(jobs)

    ids = run_with_store("enqueue", args.store, body)
    if isinstance(ids, int):  # the store could not be opened: the error is printed
        return ids
    print(f"added {len(ids)} job(s) of {args.task}")
    return 0


def _job_maker(
    args: argparse.Namespace,
) -> Callable[[dict[str, Any] | None], aw.store.NewJob]:
    """What one line's arguments become: a checked job with the command's options."""
    registry: aw.store.TaskRegistry | None = args.tasks
    if registry is not None:
        return lambda kwargs: registry.job(
            args.task, kwargs, priority=args.priority, queue=args.queue, delay=args.delay,
            max_attempts=args.max_attempts, key=args.key,
        )  # fmt: skip
    return lambda kwargs: aw.store.new_job(
        args.task, kwargs, priority=args.priority or 0, queue=args.queue or "default",
        delay=args.delay, max_attempts=args.max_attempts or 3, key=args.key,
    )  # fmt: skip


def _read_jobs(
    source: str, make: Callable[[dict[str, Any] | None], aw.store.NewJob]
) -> list[aw.store.NewJob]:
    """Every line of *source* as a job; ValueError naming the first bad line."""
    if source == "-":
        return _jobs_from(sys.stdin, "stdin", make)
    try:
        with open(source, encoding="utf-8") as lines:
            return _jobs_from(lines, source, make)
    except OSError as exc:
        raise OSError(f"--from {source}: {exc.strerror or exc}") from None


def _jobs_from(
    lines: IO[str], name: str, make: Callable[[dict[str, Any] | None], aw.store.NewJob]
) -> list[aw.store.NewJob]:
    jobs: list[aw.store.NewJob] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue  # a blank line (the last newline of a file, say) is no job
        try:
            jobs.append(make(json_object(line.strip())))
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise ValueError(f"{name} line {number}: {exc}; no job was added") from None
    return jobs
