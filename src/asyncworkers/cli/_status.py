"""``asyncworkers status``: jobs by state per queue, the oldest waiting job, dead letters."""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

import asyncworkers as aw

if TYPE_CHECKING:  # rich is imported where it draws: --help must not load it
    from rich.console import Console, RenderableType

from ._args import Commands
from ._store_args import add_store_option, count, positive_seconds, run_with_store

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
    status.add_argument(
        "--watch",
        action="store_true",
        help="show it live, read again every --interval seconds, until Ctrl-C (with --json: "
        "one JSON line per reading)",
    )
    status.add_argument(
        "--interval",
        type=positive_seconds,
        default=2.0,
        help="seconds between two readings with --watch (default: 2)",
    )
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
    if args.watch:
        from ._status_watch import watch

        return watch(args, collect_status, renderables)

    async def body(store: aw.store.Store) -> dict[str, Any]:
        return await collect_status(store, args.dead)

    status = run_with_store("status", args.store, body, read_only=True)
    if isinstance(status, int):
        return status
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        from rich.console import Console

        _render(status, Console())
    return 0


def _render(status: dict[str, Any], console: Console) -> None:
    for part in renderables(status):
        console.print(part)


def renderables(status: dict[str, Any]) -> list[RenderableType]:
    """The tables and lines that show one reading of ``status``."""
    from rich.table import Table
    from rich.text import Text

    parts: list[RenderableType] = []
    table = Table(title="Jobs by state")
    table.add_column("queue")
    for state in aw.store.STATES:
        table.add_column(state, justify="right")
    for queue, counts in sorted(status["queues"].items()):
        table.add_row(queue, *(str(counts[s]) for s in aw.store.STATES))
    table.add_row("[bold]all[/]", *(str(status["counts"][s]) for s in aw.store.STATES))
    parts.append(table)
    oldest = status["oldest_waiting"]
    if oldest is None:
        parts.append(Text("oldest waiting job: none"))
    else:
        parts.append(Text(
            f"oldest waiting job: {oldest['id']} ({oldest['task']}), "
            f"waiting {oldest['waiting_s']:.1f} s"
        ))  # fmt: skip
    if status["dead"]:
        dead = Table(title="Dead letters (most recent first)")
        for heading in ("id", "task", "queue", "attempts", "error"):
            dead.add_column(heading, overflow="fold")
        for row in status["dead"]:
            dead.add_row(str(row["id"]), row["task"], row["queue"], str(row["attempts"]),
                         row["error"] or "")  # fmt: skip
        parts.append(dead)
    return parts
