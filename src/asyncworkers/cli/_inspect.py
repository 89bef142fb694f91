"""``asyncworkers show ID`` and ``asyncworkers jobs``: one job in full, or a filtered list.

Both print a table (times in UTC) or, with ``--json``, the records as JSON objects whose
times are unix seconds, as ``Store.get`` and ``Store.jobs`` return them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncworkers as aw

from ._args import Commands
from ._store_args import add_store_option, count, job_id, run_with_store, store_text

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["add_commands"]

# Times in the list: the date goes when the table is narrow, not the time of day.
_SHORT = "%m-%d %H:%M:%S"
# Longest error text a row of ``jobs`` shows (``show`` shows it whole).
_ERROR_WIDTH = 60


def add_commands(commands: Commands) -> None:
    """Add ``show`` and ``jobs`` to the ``asyncworkers`` parser."""
    show = commands.add_parser(
        "show",
        help="show one job: state, attempts, times, worker, error, result",
        description="Show one job of a durable store in full (exit status 1: no such job).",
    )
    add_store_option(show)
    show.add_argument("id", metavar="ID", type=job_id, help="the job's id")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(handler=_cmd_show)

    jobs = commands.add_parser(
        "jobs",
        help="list jobs, newest first, by state, queue or task",
        description="List the jobs of a durable store, newest first; filters combine.",
    )
    add_store_option(jobs)
    jobs.add_argument("--state", choices=aw.store.STATES, default=None, help="only this state")
    jobs.add_argument("--queue", type=store_text, default=None, help="only this queue")
    jobs.add_argument("--task", type=store_text, default=None, help="only this task")
    jobs.add_argument(
        "--limit", type=count, default=50, metavar="N", help="at most N jobs (default: 50)"
    )
    jobs.add_argument("--json", action="store_true", help="print a JSON list")
    jobs.set_defaults(handler=_cmd_jobs)


def as_json(record: aw.store.JobRecord) -> dict[str, Any]:
    """A record as plain data (times as unix seconds)."""
    return dataclasses.asdict(record)


def _when(seconds: float | None, style: str = "%Y-%m-%d %H:%M:%S") -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime(style)


def _cmd_show(args: argparse.Namespace) -> int:
    async def body(store: aw.store.Store) -> list[aw.store.JobRecord]:
        record = await store.get(args.id)
        return [] if record is None else [record]

    found = run_with_store("show", args.store, body, read_only=True)
    if isinstance(found, int):
        return found
    if not found:
        print(f"asyncworkers show: no job with id {args.id}", file=sys.stderr)
        return 1
    (record,) = found
    if args.json:
        print(json.dumps(as_json(record), indent=2))
    else:
        from rich.console import Console  # here: --help must not load rich

        _render_one(record, Console())
    return 0


def _render_one(r: aw.store.JobRecord, console: Console) -> None:
    from rich.table import Table

    table = Table(title=f"Job {r.id}", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows = [
        ("task", r.task),
        ("state", r.state),
        ("queue", r.queue),
        ("priority", str(r.priority)),
        ("attempts", f"{r.attempts} of {r.max_attempts}"),
        ("key", r.key or "-"),
        ("enqueued (UTC)", _when(r.enqueued_at)),
        ("run at (UTC)", _when(r.run_at)),
        ("started (UTC)", _when(r.started_at)),
        ("finished (UTC)", _when(r.finished_at)),
        ("lease until (UTC)", _when(r.lease_until)),
        ("worker", r.worker or "-"),
        ("arguments", json.dumps(r.args)),
        ("result", json.dumps(r.result) if r.state == "succeeded" else "-"),
        ("last error", r.error or "-"),
    ]
    for field, value in rows:
        table.add_row(field, value)
    console.print(table, highlight=False)


def _cmd_jobs(args: argparse.Namespace) -> int:
    async def body(store: aw.store.Store) -> list[aw.store.JobRecord]:
        return await store.jobs(state=args.state, queue=args.queue, task=args.task,
                                limit=args.limit)  # fmt: skip

    records = run_with_store("jobs", args.store, body, read_only=True)
    if isinstance(records, int):
        return records
    if args.json:
        print(json.dumps([as_json(r) for r in records], indent=2))
    else:
        from rich.console import Console

        _render_many(records, Console())
    return 0


def _render_many(records: list[aw.store.JobRecord], console: Console) -> None:
    from rich.table import Table

    if not records:
        console.print("no jobs match")
        return
    table = Table(title=f"{len(records)} job(s), newest first (times UTC)")
    # ``show ID`` has every field; a row keeps to what tells jobs apart
    table.add_column("id", no_wrap=True)
    table.add_column("task", overflow="fold", min_width=8)
    table.add_column("state", no_wrap=True)
    table.add_column("queue", overflow="fold")
    table.add_column("tries", no_wrap=True)
    table.add_column("enqueued", overflow="fold")
    table.add_column("worker", overflow="fold")
    table.add_column("last error", overflow="fold", min_width=10)
    for r in records:
        table.add_row(
            str(r.id), r.task, r.state, r.queue, f"{r.attempts}/{r.max_attempts}",
            _when(r.enqueued_at, _SHORT), r.worker or "", (r.error or "")[:_ERROR_WIDTH],
        )  # fmt: skip
    console.print(table, highlight=False)
