"""The dispatcher: feed tasks to a Runtime on schedule, turn each finished job into a log.

One coroutine, the feeder, submits the tasks in order: in the closed model whenever fewer
than ``workers`` are in flight, in the open model at each task's intended time (or at once
when behind; a start that had to wait for a free slot is late, and counted so). Everything
else happens in the jobs' done-callbacks, on the loop's thread: the log row, ``on_done`` (an
async one runs in a task of the dispatcher's own task group), the counts and the timeline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup

import asyncworkers as aw

from ._calls import Outcome, call_async, call_sync, is_coroutine_callable
from ._log import TaskLog, is_failure
from ._options import Plan
from ._progress import ProgressLine
from ._report import Report, Tally
from ._schedule import LATE_AFTER

__all__ = ["Dispatcher"]

# How many tasks the feeder submits in a row, at most, before it lets the loop run.
_FAIR_STREAK = 100


class Dispatcher:
    """One dispatch() call, from the first submit to the Report."""

    def __init__(self, plan: Plan) -> None:
        self._plan = plan
        self._sync_on_done = plan.on_done is not None and not is_coroutine_callable(plan.on_done)
        self._in_flight: dict[int, aw.Job[Outcome]] = {}  # by index (task id - 1)
        self._intended: dict[int, float] = {}  # open model: intended unix start, by index
        self._capped: set[int] = set()  # open model: tasks that waited for a free slot
        self._on_job_end = self._ended  # bound once: one done-callback per job
        self._room: asyncio.Future[None] | None = None  # the feeder waits for a free slot
        self._idle: asyncio.Future[None] | None = None  # the drain waits for the last job
        self._fatal: BaseException | None = None
        self._stopping = False  # being cancelled or stopped: no more callbacks
        self._tg: TaskGroup | None = None
        self._progress: ProgressLine | None = None
        self._t0 = 0.0  # time.monotonic() at the start
        self._tally = Tally(0.0, plan.record)

    async def run(self) -> Report:
        plan = self._plan
        with ProgressLine(plan.total, enabled=plan.progress) as self._progress:
            if plan.runtime is not None:
                ended_at = await self._run_on(plan.runtime)
            else:
                # Never more workers (threads, processes) than tasks: a cap far above the
                # task count would only size pools nobody uses.
                size = max(1, min(plan.workers, plan.total))
                processes = size if plan.kind == "process" else None
                async with aw.Runtime(size, threads=size, processes=processes) as rt:
                    ended_at = await self._run_on(rt)
        if plan.on_all_done is not None:
            await self._call_on_all_done(plan.on_all_done)
        return self._tally.report(plan.total, ended_at)

    # -- feeding -------------------------------------------------------------------------

    async def _run_on(self, rt: aw.Runtime) -> float:
        """Feed *rt* and wait for the last task; returns when that was (unix time).

        The clock starts here, with the runtime up: the schedule's origin, the report's
        ``started_at``; starting and stopping a runtime is not the dispatch's time.
        """
        self._t0, started_at = time.monotonic(), time.time()
        self._tally = Tally(started_at, self._plan.record)
        error: BaseException | None = None
        try:
            async with anyio.create_task_group() as self._tg:
                try:
                    with anyio.move_on_after(self._plan.duration):
                        await self._feed(rt)
                    await self._drain()
                except Exception as exc:  # raised as itself below, not in a group
                    error = exc
                    self._tg.cancel_scope.cancel()
        except BaseException:  # cancelled: the jobs in flight go too
            self._stop("the dispatch was cancelled")
            raise
        error = error or self._fatal
        if error is not None:
            self._stop(f"the dispatch stopped on {type(error).__name__}")
            raise error
        return time.time()

    async def _feed(self, rt: aw.Runtime) -> None:
        plan = self._plan
        offsets, cap, t0 = plan.offsets, plan.workers, self._t0
        started_at = self._tally.started_at
        fn: Callable[..., Any] = call_async if plan.kind == "async" else call_sync
        # No options but for processes: the runtime's fast path is for calls without any
        # (the async wrapper runs natively, the sync one goes to a thread by default).
        options: dict[str, Any] = {"kind": "process"} if plan.kind == "process" else {}
        streak = 0
        for index in range(plan.total):
            intended = None
            if offsets is not None:
                offset = next(offsets, None)
                if offset is None:
                    return  # the schedule ended: the other tasks stay undispatched
                # A loop; the event loop's timers may wake us early (uvloop's resolution is a
                # millisecond), and a task must never start before its intended time.
                while (delay := t0 + offset - time.monotonic()) > 0:
                    await asyncio.sleep(delay)
                    streak = 0
                intended = started_at + offset
            if len(self._in_flight) >= cap:
                await self._free_slot(cap)
                streak = 0
                if intended is not None:  # the cap held it back: late, however little
                    self._capped.add(index)
            elif streak >= _FAIR_STREAK:
                await asyncio.sleep(0)  # tasks never made us wait: let the loop run
                streak = 0
            args = (plan.function, index + 1, plan.config, plan.task(index))
            try:
                job = rt.submit_nowait(fn, *args, **options)
            except aw.QueueFull:  # a shared runtime with max_pending: wait for room
                job = await rt.submit(fn, *args, **options)
            self._started(intended, job)
            streak += 1

    def _started(self, intended: float | None, job: aw.Job[Outcome]) -> None:
        index = self._tally.dispatching()
        self._in_flight[index] = job
        if intended is not None:
            self._intended[index] = intended
        job.add_done_callback(self._on_job_end)

    async def _free_slot(self, cap: int) -> None:
        while len(self._in_flight) >= cap:
            self._room = asyncio.get_running_loop().create_future()
            try:
                await self._room
            finally:
                self._room = None

    async def _drain(self) -> None:
        while self._in_flight:
            self._idle = asyncio.get_running_loop().create_future()
            try:
                await self._idle
            finally:
                self._idle = None

    def _stop(self, reason: str) -> None:
        """Cancel the jobs still in flight (cancelled, failed, or a fatal task error)."""
        self._stopping = True
        for job in list(self._in_flight.values()):
            job.cancel(reason)

    # -- outcomes (done-callbacks, on the loop's thread; they must never raise) ----------

    def _ended(self, job: aw.Job[Outcome]) -> None:
        index = job.args[1] - 1  # the task id, an argument of the wrapper
        intended = self._intended.pop(index, None) if self._intended else None
        log, completed = self._log(index, intended, job)
        if log is None:  # fatal: the dispatch stops
            self._release(index)
            return
        if intended is not None and self._late(index, intended, log.started_at):
            self._tally.late_starts += 1
        on_done = self._plan.on_done
        if completed and on_done is not None and not self._stopping:
            if not self._sync_on_done:
                # The task keeps its slot until its on_done ends: slow callbacks slow the
                # dispatch down instead of piling up.
                assert self._tg is not None
                self._tg.start_soon(self._on_done_async, on_done, index, log)
                return
            try:
                log.result = on_done(log.task_id, self._plan.config, log.result, log)
            except Exception as exc:
                log.result = exc
            except BaseException as exc:
                self._fail(exc)
                self._release(index)
                return
            log.ok = not is_failure(log.result)
        self._record(index, log, completed)
        self._release(index)

    def _late(self, index: int, intended: float, started: float | None) -> bool:
        """Late: it waited for a free slot, or started more than LATE_AFTER after its time."""
        if self._capped:
            capped = index in self._capped
            self._capped.discard(index)
            if capped:
                return True
        return started is not None and started - intended > LATE_AFTER

    def _release(self, index: int) -> None:
        """The task's slot is free: wake the feeder, or the drain after the last one."""
        del self._in_flight[index]
        if self._room is not None and not self._room.done():
            self._room.set_result(None)
        if self._idle is not None and not self._in_flight and not self._idle.done():
            self._idle.set_result(None)

    def _log(
        self, index: int, intended: float | None, job: aw.Job[Outcome]
    ) -> tuple[TaskLog | None, bool]:
        """The task's log row and whether it completed; (None, _) after a fatal error."""
        if job.state is aw.JobState.COMPLETED:
            out = job.result()
            if out.fatal:
                self._fail(out.result)
                return None, False
            return TaskLog(
                index + 1, intended, out.started_at, out.ended_at,
                out.ended_at - out.started_at, out.result, not is_failure(out.result),
                out.metadata,
            ), True  # fmt: skip
        # FAILED: the runtime ended it (a worker process died); CANCELLED: stopped.
        error = job.exception()
        started = None if job.started_at is None else self._unix(job.started_at)
        ended = self._unix(job.finished_at) if job.finished_at is not None else None
        duration = None if started is None or ended is None else ended - started
        completed = job.state is aw.JobState.FAILED
        return TaskLog(index + 1, intended, started, ended, duration, error, False, {}), completed

    def _record(self, index: int, log: TaskLog, completed: bool) -> None:
        self._tally.add(index, log, completed)
        if self._progress is not None:
            self._progress.advance(log.ok)

    async def _on_done_async(self, on_done: Callable[..., Any], index: int, log: TaskLog) -> None:
        try:
            log.result = await on_done(log.task_id, self._plan.config, log.result, log)
        except Exception as exc:
            log.result = exc
        except asyncio.CancelledError:
            self._release(index)
            raise
        except BaseException as exc:
            self._fail(exc)
            self._release(index)
            return
        log.ok = not is_failure(log.result)
        self._record(index, log, True)
        self._release(index)

    def _fail(self, error: BaseException) -> None:
        """A task or callback raised a BaseException (KeyboardInterrupt...): stop, re-raise."""
        if self._fatal is None:
            self._fatal = error
            self._stopping = True
            assert self._tg is not None
            self._tg.cancel_scope.cancel()

    def _unix(self, monotonic: float) -> float:
        return self._tally.started_at + (monotonic - self._t0)

    # -- after the last task ---------------------------------------------------------------

    async def _call_on_all_done(self, on_all_done: Callable[..., Any]) -> None:
        is_async = is_coroutine_callable(on_all_done)
        config = self._plan.config
        tally = self._tally
        for index, log in enumerate(tally.logs):
            if log is None or index in tally.cancelled:
                continue  # on_all_done, like on_done, sees the tasks that completed
            try:
                result = on_all_done(log.task_id, config, log.result, log)
                if is_async:
                    result = await result
            except Exception as exc:
                result = exc
            ok = not is_failure(result)
            if ok != log.ok:
                tally.count(log, -1)
                log.ok = ok
                tally.count(log, +1)
            log.result = result
