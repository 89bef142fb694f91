"""``processes=N``: N child processes, one event loop and one aiohttp session each.

Each child runs its share of the config (:meth:`LoadConfig.share`) with :func:`run_here`
and talks to the parent over a pipe: a progress message every half second, then its
recorder as plain data (:meth:`Recorder.dump`). The parent merges the recorders (HDR
histograms add exactly). Children are spawned, not forked: the parent may be running an
event loop and threads.

Stopping: cancelling the parent's token sends SIGINT to every child, which stops its own run
and still sends its partial recorder. A Ctrl-C in a terminal reaches the children directly
too; they take it the same way. A child that does not report within its deadline after the
stop, or dies, is terminated and its part is missing: the parent raises
:class:`LoadProcessError` naming it, rather than report a total that is not one.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import anyio

import asyncworkers as aw

from ._config import LoadConfig
from ._recorder import Recorder
from ._run import Progress, ProgressCallback, run_here

__all__ = ["LoadProcessError", "run_processes"]

# After a stop, how long a child may take to send its partial report, beyond its timeout.
STOP_GRACE = 10.0


class LoadProcessError(aw.AsyncworkersError):
    """A load process died or never sent its report."""


def _child_main(config: LoadConfig, conn: Connection) -> None:
    """A child's entry point (module level: it is spawned)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # until the loop takes SIGINT over
    try:
        aw.run(_child_run, config, conn)
    finally:
        conn.close()


async def _child_run(config: LoadConfig, conn: Connection) -> None:
    token = aw.CancellationToken()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, token.cancel, "SIGINT")
    loop.add_signal_handler(signal.SIGTERM, token.cancel, "SIGTERM")

    def on_progress(progress: Progress) -> None:
        try:
            conn.send(("progress", progress))
        except OSError:  # the parent is gone (it was cancelled): stop quietly
            token.cancel("the parent process is gone")

    recorder = await run_here(config, token=token, on_progress=on_progress)
    with contextlib.suppress(OSError):  # BrokenPipeError: nobody to report to any more
        conn.send(("done", recorder.dump()))


async def run_processes(
    config: LoadConfig,
    *,
    token: aw.CancellationToken,
    on_progress: ProgressCallback | None,
) -> Recorder:
    """Run *config* in ``config.processes`` child processes; the merged recorder."""
    context = multiprocessing.get_context("spawn")
    count = config.processes
    children: list[tuple[BaseProcess, Connection]] = []
    try:
        for index in range(count):
            receive, send = context.Pipe(duplex=False)
            child = context.Process(
                target=_child_main,
                args=(config.share(index, count), send),
                name=f"asyncworkers-load-{index}",
                daemon=True,
            )
            child.start()
            send.close()  # the child holds its end: EOF here when it is gone
            children.append((child, receive))
        parts: list[dict[str, Any] | None] = [None] * count
        latest: list[Progress | None] = [None] * count
        async with anyio.create_task_group() as outer:
            outer.start_soon(_stop_children_on, token, [c for c, _ in children], config.timeout)
            async with anyio.create_task_group() as readers:
                for index, (_, conn) in enumerate(children):
                    readers.start_soon(_collect, index, conn, parts, latest, on_progress)
            outer.cancel_scope.cancel()
    finally:
        for process, conn in children:
            conn.close()
            if process.is_alive():
                process.terminate()
            process.join(timeout=STOP_GRACE)
    missing = [i for i, part in enumerate(parts) if part is None]
    if missing:
        raise LoadProcessError(f"load processes {missing} ended without a report")
    return Recorder.merge([Recorder.load(part) for part in parts if part is not None])


async def _collect(
    index: int,
    conn: Connection,
    parts: list[dict[str, Any] | None],
    latest: list[Progress | None],
    on_progress: ProgressCallback | None,
) -> None:
    """Read one child's messages until its report (or its end)."""
    while True:
        await anyio.wait_readable(conn.fileno())
        try:
            kind, payload = conn.recv()
        except EOFError:  # it died: its part stays missing
            return
        if kind == "done":
            parts[index] = payload
            return
        latest[index] = payload
        if on_progress is not None and all(p is not None for p in latest):
            on_progress(_sum(latest))  # type: ignore[arg-type]


def _sum(progress: list[Progress]) -> Progress:
    return Progress(
        elapsed=max(p.elapsed for p in progress),
        requests=sum(p.requests for p in progress),
        errors=sum(p.errors for p in progress),
        rate=sum(p.rate for p in progress),
        p99_ms=max(p.p99_ms for p in progress),  # the worst process: a bound, not a merge
    )


async def _stop_children_on(
    token: aw.CancellationToken, children: list[BaseProcess], timeout: float
) -> None:
    """Once *token* is cancelled, ask every child to stop (SIGINT); terminate the ones
    that have not reported after their request timeout and a grace period."""
    await token.wait()
    for child in children:
        if child.pid is not None and child.is_alive():
            os.kill(child.pid, signal.SIGINT)
    await anyio.sleep(timeout + STOP_GRACE)
    for child in children:
        if child.is_alive():
            child.terminate()
