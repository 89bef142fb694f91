"""``asyncworkers status --watch``: the status tables, live in the terminal, until Ctrl-C.

Each reading is a fresh look at the store (read-only), every ``--interval`` seconds; with
``--json`` each reading is one JSON line instead, for scripts. Into a pipe or a file (no
terminal to redraw) the frames follow one another.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

import asyncworkers as aw

from ._store_args import run_with_store

__all__ = ["watch"]

Collect = Callable[[aw.store.Store, int], Awaitable[dict[str, Any]]]
Render = Callable[[dict[str, Any]], list[RenderableType]]


def watch(args: argparse.Namespace, collect: Collect, render: Render) -> int:
    """Run the watch; 0 on Ctrl-C, 2 when the store cannot be opened."""

    async def body(store: aw.store.Store) -> int:
        if args.json:
            while True:
                print(json.dumps(await collect(store, args.dead)), flush=True)
                await anyio.sleep(args.interval)
        console = Console()

        async def frame() -> Group:
            status = await collect(store, args.dead)
            stamp = Text(f"{args.store} at {time.strftime('%H:%M:%S')} (Ctrl-C to stop)",
                         style="dim")  # fmt: skip
            return Group(stamp, *render(status))

        if not console.is_terminal:  # a pipe or a file: one frame after the other
            while True:
                console.print(await frame())
                await anyio.sleep(args.interval)
        with Live(console=console, auto_refresh=False, redirect_stdout=False) as live:
            while True:
                live.update(await frame(), refresh=True)
                await anyio.sleep(args.interval)

    try:
        return run_with_store("status", args.store, body, read_only=True)
    except KeyboardInterrupt:
        return 0
