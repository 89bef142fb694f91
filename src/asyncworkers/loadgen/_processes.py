"""``processes=N``: N child processes, one event loop and one aiohttp session each.

Each child runs its share of the config (:meth:`LoadConfig.share`) with :func:`run_here`
and talks to the parent over a pipe: ``ready`` once its event loop handles SIGINT, a
progress message every half second, then its recorder as plain data
(:meth:`Recorder.dump`). The parent merges the recorders (HDR histograms add exactly).
Children are spawned, not forked: the parent may be running an event loop and threads.

Stopping: cancelling the parent's token sends SIGINT to every ready child (one still
starting gets it when it says it is ready), which stops its run and still sends its partial
recorder. A Ctrl-C in a terminal reaches the children directly too; they take it the same
way, and one that it kills while still importing never sent a request: its part is empty.
A child that does not report within its deadline after the stop, or dies while running, is
terminated and its part is missing: the parent raises :class:`LoadProcessError` naming it,
rather than report a total that is not one.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
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


# A stop signal that arrives after a child's entry point began but before its event loop
# took the signals over is noted here. (A spawned child does not inherit a blocked signal
# mask, and before its entry point it is importing: the parent therefore sends it SIGINT only
# once it said it is ready, see _collect.)
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_stop_before_loop = False


def _note_stop(signum: int, frame: object) -> None:
    global _stop_before_loop
    _stop_before_loop = True


def _child_main(config: LoadConfig, conn: Connection) -> None:
    """A child's entry point (module level: it is spawned)."""
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _note_stop)
    try:
        aw.run(_child_run, config, conn)
    finally:
        conn.close()


async def _child_run(config: LoadConfig, conn: Connection) -> None:
    token = aw.CancellationToken()
    loop = asyncio.get_running_loop()
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, token.cancel, signal.Signals(signum).name)
    if _stop_before_loop:
        token.cancel("stopped while starting")

    def send(kind: str, payload: object) -> None:
        try:
            conn.send((kind, payload))
        except OSError:  # the parent is gone (it was cancelled): stop quietly
            token.cancel("the parent process is gone")

    send("ready", None)  # from here on, a SIGINT stops the run and the report still comes

    recorder = await run_here(
        config, token=token, on_progress=lambda progress: send("progress", progress)
    )
    send("done", recorder.dump())


class _Child:
    """The parent's view of one load process."""

    def __init__(self, process: BaseProcess, conn: Connection, open_model: bool) -> None:
        self.process = process
        self.conn = conn
        self.open_model = open_model
        self.ready = False  # it handles SIGINT: its run has begun or is about to
        self.report: dict[str, Any] | None = None
        self.progress: Progress | None = None

    def stop(self) -> None:
        """Ask it to stop (SIGINT), if it is ready for it."""
        if self.ready and self.process.pid is not None and self.process.is_alive():
            os.kill(self.process.pid, signal.SIGINT)


async def run_processes(
    config: LoadConfig,
    *,
    token: aw.CancellationToken,
    on_progress: ProgressCallback | None,
) -> Recorder:
    """Run *config* in ``config.processes`` child processes; the merged recorder."""
    context = multiprocessing.get_context("spawn")
    count = config.processes
    children: list[_Child] = []
    try:
        for index in range(count):
            receive, send = context.Pipe(duplex=False)
            process = context.Process(
                target=_child_main,
                args=(config.share(index, count), send),
                name=f"asyncworkers-load-{index}",
                daemon=True,
            )
            process.start()
            send.close()  # the child holds its end: EOF here when it is gone
            children.append(_Child(process, receive, config.open_model))
        async with anyio.create_task_group() as outer:
            outer.start_soon(_stop_children_on, token, children, config.timeout)
            async with anyio.create_task_group() as readers:
                for child in children:
                    readers.start_soon(_collect, child, children, token, on_progress)
            outer.cancel_scope.cancel()
    finally:
        for child in children:
            child.conn.close()
            if child.process.is_alive():
                child.process.terminate()
            child.process.join(timeout=STOP_GRACE)
    missing = [i for i, child in enumerate(children) if child.report is None]
    if missing:
        raise LoadProcessError(f"load processes {missing} ended without a report")
    return Recorder.merge([Recorder.load(c.report) for c in children if c.report is not None])


async def _collect(
    child: _Child,
    children: list[_Child],
    token: aw.CancellationToken,
    on_progress: ProgressCallback | None,
) -> None:
    """Read one child's messages until its report (or its end)."""
    while True:
        await anyio.wait_readable(child.conn.fileno())
        # Waiting made the pipe non-blocking (uvloop does), and a message larger than one
        # write arrives in pieces: read the rest of it blocking (the child is writing it).
        os.set_blocking(child.conn.fileno(), True)
        try:
            kind, payload = child.conn.recv()
        except EOFError:
            if not child.ready and token.cancelled:
                # Stopped while it was still starting: it never sent a request, so its
                # part is empty, not missing.
                child.report = _nothing_sent(child.open_model)
            return  # otherwise it died: its part stays missing
        if kind == "ready":
            child.ready = True
            if token.cancelled:  # the stop came while it was starting
                child.stop()
        elif kind == "done":
            child.report = payload
            return
        else:
            child.progress = payload
            latest = [c.progress for c in children]
            if on_progress is not None and all(p is not None for p in latest):
                on_progress(_sum(latest))  # type: ignore[arg-type]


def _nothing_sent(open_model: bool) -> dict[str, Any]:
    now = time.time()
    recorder = Recorder(started_at=now, open_model=open_model)
    recorder.finish(now, None)
    return recorder.dump()


def _sum(progress: list[Progress]) -> Progress:
    return Progress(
        elapsed=max(p.elapsed for p in progress),
        requests=sum(p.requests for p in progress),
        errors=sum(p.errors for p in progress),
        rate=sum(p.rate for p in progress),
        p99_ms=max(p.p99_ms for p in progress),  # the worst process: a bound, not a merge
    )


async def _stop_children_on(
    token: aw.CancellationToken, children: list[_Child], timeout: float
) -> None:
    """Once *token* is cancelled, ask every ready child to stop (SIGINT; the others get it
    when they say they are ready); terminate the ones that have not reported after their
    request timeout and a grace period."""
    await token.wait()
    for child in children:
        child.stop()
    await anyio.sleep(timeout + STOP_GRACE)
    for child in children:
        if child.process.is_alive():
            child.process.terminate()
