"""``asyncworkers status``: jobs by state per queue, the oldest waiting job, dead letters."""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

import asyncworkers as aw

if TYPE_CHECKING:
    from rich.console import Console

from ._args import Commands
from ._store_args import add_store_option, count, run_with_store

__all__ = ["add_command", "collect_status"]


def add_command(commands: Commands) -> None:
    """Add ``status`` to the ``asyncworkers`` parser."""
    status = commands.add_parser(
        "status",
        help="show the jobs of a durable store by state",
        description="Jobs by state per queue, the oldest waiting job and the dead letters.",
    )
    add_store_option(status)
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.add_argument("--dead", type=count, default=10, help="dead letters to list (default: 10)")
    status.set_defaults(handler=_cmd_status)


async def collect_status(store: aw.store.Store, dead: int = 10) -> dict[str, Any]:
    """What ``status`` shows, as plain data."""
    oldest = await store.oldest_waiting()
    return {
        "counts": await store.counts(),
        "queues": await store.queue_counts(),
        "oldest_waiting": None
        if oldest is None
        else {"id": oldest.id, "task": oldest.task, "waiting_s": time.time() - oldest.run_at},
        "dead": [_dead_row(r) for r in await store.dead(dead)],
    }


def _dead_row(r: aw.store.JobRecord) -> dict[str, Any]:
    return {"id": r.id, "task": r.task, "queue": r.queue, "attempts": r.attempts, "error": r.error}


def _cmd_status(args: argparse.Namespace) -> int:
    async def body(store: aw.store.Store) -> dict[str, Any]:
        return await collect_status(store, args.dead)

    status = run_with_store("status", args.store, body, read_only=True)
    if isinstance(status, int):
        return status
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        from rich.console import Console  # here: --help must not load rich

        _render(status, Console())
    return 0


def _render(status: dict[str, Any], console: Console) -> None:
    from rich.table import Table

    table = Table(title="Jobs by state")
    table.add_column("queue")
    for state in aw.store.STATES:
        table.add_column(state, justify="right")
    for queue, counts in sorted(status["queues"].items()):
        table.add_row(queue, *(str(counts[s]) for s in aw.store.STATES))
    table.add_row("[bold]all[/]", *(str(status["counts"][s]) for s in aw.store.STATES))
    console.print(table)
    oldest = status["oldest_waiting"]
    if oldest is None:
        console.print("oldest waiting job: none")
    else:
        console.print(
            f"oldest waiting job: {oldest['id']} ({oldest['task']}), "
            f"waiting {oldest['waiting_s']:.1f} s",
            highlight=False,
        )
    if status["dead"]:
        dead = Table(title="Dead letters (most recent first)")
        for heading in ("id", "task", "queue", "attempts", "error"):
            dead.add_column(heading, overflow="fold")
        for row in status["dead"]:
            dead.add_row(str(row["id"]), row["task"], row["queue"], str(row["attempts"]),
                         row["error"] or "")  # fmt: skip
        console.print(dead)
