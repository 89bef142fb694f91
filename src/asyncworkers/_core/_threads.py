"""The runtime's own worker threads: a thread job is handed to an idle one through a queue.

Why not ``anyio.to_thread.run_sync``: it opens a cancel scope, checkpoints and keeps an
idle-thread registry on every call, which made a thread job cost 2.8x a
``ThreadPoolExecutor`` round trip (``benchmarks/icount.py``). Here a hop is one
``SimpleQueue.put`` from the loop, and one ``call_soon_threadsafe`` back from the thread;
the runtime keeps everything else (its ``threads=`` limiter, the cancel policy, the job's
context) around it, in ``_bridges``.

A pool belongs to one runtime and one event loop. It starts a thread only when every thread
it has is busy, so it never holds more threads than jobs ran in threads at once (the
runtime's limiter bounds that), plus those left behind by abandoned jobs. Its threads are
daemon threads, so an idle pool never holds up the interpreter's exit; a job abandoned in
one is waited for at exit through :func:`keep_alive_while`.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Iterable
from queue import SimpleQueue
from typing import Any, Final

from ._units import Job

__all__ = ["WorkerThreads"]

# One call handed to a worker thread: the context to run it in, what to run, the job it runs
# for, and the future of its outcome (on the loop). None tells one thread to leave.
_Call = tuple[contextvars.Context, Callable[[Job[Any]], Any], Job[Any], "asyncio.Future[Any]"]

_THREAD_NAME: Final = "asyncworkers-thread"


class _WorkerThread(threading.Thread):
    """A pool thread, which says what job it runs now (read by :meth:`threads_running`)."""

    def __init__(self, pool: WorkerThreads, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.pool = pool
        self.job: Job[Any] | None = None

    def run(self) -> None:
        self.pool._serve(self)


class WorkerThreads:
    """Worker threads for one runtime on one event loop.

    :meth:`run` and :meth:`close` are called from the loop's thread only; the worker
    threads touch nothing of the loop's but ``call_soon_threadsafe``.
    """

    __slots__ = ("_busy", "_calls", "_closed", "_loop", "_threads")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._calls: SimpleQueue[_Call | None] = SimpleQueue()
        self._threads: list[_WorkerThread] = []
        self._busy = 0  # calls handed over and not yet reported back (loop's view)
        self._closed = False

    def run(self, fn: Callable[[Job[Any]], Any], job: Job[Any]) -> asyncio.Future[Any]:
        """Call ``fn(job)`` in a worker thread, in a copy of the caller's context; the
        future of its outcome.

        Cancelling the future abandons the call: the thread finishes it alone and its
        outcome is dropped.
        """
        if self._closed:
            raise RuntimeError("the runtime's worker threads are shut down")
        future = self._loop.create_future()
        self._busy += 1
        if self._busy > len(self._threads):  # none is idle: one more
            self._start_thread()
        self._calls.put((contextvars.copy_context(), fn, job, future))
        return future

    def close(self) -> None:
        """Let every thread leave once it is idle: at once if it is, or after its call.

        Idempotent. Threads are not joined: one may be running an abandoned job.
        """
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._calls.put(None)

    def threads_running(self, jobs: Iterable[Job[Any]]) -> list[threading.Thread]:
        """The threads running any of *jobs* now."""
        wanted = set(jobs)
        return [thread for thread in self._threads if thread.job in wanted]

    @property
    def size(self) -> int:
        """How many threads the pool has started (idle, busy or left behind)."""
        return len(self._threads)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<WorkerThreads {state} threads={len(self._threads)} busy={self._busy}>"

    # -- the threads ---------------------------------------------------------------------

    def _start_thread(self) -> None:
        thread = _WorkerThread(self, f"{_THREAD_NAME}-{len(self._threads) + 1}")
        thread.start()
        self._threads.append(thread)

    def _serve(self, thread: _WorkerThread) -> None:
        """A worker thread's life: take calls until told to leave."""
        get = self._calls.get
        report = self._loop.call_soon_threadsafe
        deliver = self._deliver
        while (call := get()) is not None:
            context, fn, job, future = call
            thread.job = job
            value: Any = None
            error: BaseException | None = None
            try:
                value = context.run(fn, job)
            except BaseException as exc:  # fn wraps what is not an Exception (see _bridges)
                error = exc
            thread.job = None
            # A try rather than contextlib.suppress: this runs once per job.
            try:  # noqa: SIM105
                report(deliver, future, value, error)
            except RuntimeError:  # the loop is closed: nobody waits for this outcome
                pass
            # Drop the references before waiting, so that an idle thread keeps no job's
            # arguments, result or traceback alive.
            del call, context, fn, job, future, value, error

    def _deliver(
        self, future: asyncio.Future[Any], value: Any, error: BaseException | None
    ) -> None:
        """On the loop: a call came back."""
        self._busy -= 1
        if future.cancelled():  # abandoned by its awaiting worker
            return
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)
