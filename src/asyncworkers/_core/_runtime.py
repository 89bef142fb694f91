"""Runtime: a priority queue drained by long-lived worker coroutines under an anyio task group.

How a job flows: ``submit_nowait`` checks the options (``_options``) and queues a handle
(``_queue``); a worker pops it, starts it (``Job._start``) and runs it: a plain coroutine job
inline in the worker's own loop (no task, no cancel scope, no future unless someone awaits
the handle), a job with a timeout or token under a cancel scope, a thread or process job
through ``_bridges``. Its outcome goes through ``_settle`` (a stop request wins, a failure
may be retried) to ``_end``, the single way into a final state: metrics, callbacks, waiters
and hooks, once per job.

Cancelling an inline job injects a ``task.cancel()`` into its worker and takes it back with
``Task.uncancel()``, the way ``asyncio.timeout`` does, so that the worker lives on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import os
import time
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from heapq import heappop
from types import TracebackType
from typing import Any, Final, Literal, TypeVar, TypeVarTuple, Unpack, overload

import anyio
from anyio.abc import TaskGroup

from ._bridges import JobRaised, keep_alive_while, run_in_process, run_in_thread
from ._cancel import TokenLinks
from ._exceptions import AsyncworkersError, JobCancelled, JobTimeout, QueueFull, RuntimeClosed
from ._lifecycle import Lifecycle
from ._metrics import Metrics, Recorder
from ._options import (
    JobOptions,
    Options,
    OptionsMemo,
    OtherOptions,
    parse_options,
    parse_unit,
    plain_options,
)
from ._queue import JobQueue
from ._retry import Retry
from ._signals import SignalDrain
from ._threads import WorkerThreads
from ._units import (
    INJECTED,
    Extras,
    Job,
    JobState,
    Priority,
    Seat,
    WorkUnit,
    _current_job,
    call_logged,
    current_job,
)
from ._validate import check_count, check_seconds

__all__ = ["Runtime"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

logger = logging.getLogger("asyncworkers")

_now = time.monotonic
_new_job = object.__new__  # see submit_nowait
_running_loop = asyncio._get_running_loop  # the C function: None outside a loop, no raise
_PENDING: Final = JobState.PENDING
_RUNNING: Final = JobState.RUNNING
_COMPLETED: Final = JobState.COMPLETED
_FAILED: Final = JobState.FAILED
_CANCELLED: Final = JobState.CANCELLED
_NORMAL: Final = int(Priority.NORMAL)
_INF: Final = math.inf
_NEW: Final = Lifecycle.NEW
_OPEN: Final = Lifecycle.OPEN
_CLOSING: Final = Lifecycle.CLOSING
_CLOSED: Final = Lifecycle.CLOSED

# How long cancelled jobs get to stop, in the last phase of shutdown, when no timeout says.
DEFAULT_GRACE: Final = 1.0

# How many jobs a worker runs in a row, at most, before it lets the event loop run.
_FAIR_STREAK: Final = 100

# Priorities that need no further check on the fast path of submit.
_PLAIN_INTS: Final = frozenset((int, Priority))

# The longest retry backoff a timer is set for (a backoff that has grown past it would
# overflow the loop's timers; nobody waits 115 days for a retry).
_LONGEST_BACKOFF: Final = 1e7

# The code flag of ``async def`` functions (inspect.CO_COROUTINE), read on the fast path.
_CO_COROUTINE: Final = inspect.CO_COROUTINE


# What _intake_loop holds while the runtime takes no jobs.
_NO_INTAKE: Final = object()

# Workers start as jobs arrive, up to the cap; idle ones above this many end once they have
# been idle for a whole _IDLE_GRACE (a burst does not pay for starting its workers twice).
_IDLE_FLOOR: Final = 8
_IDLE_GRACE: Final = 10.0

# What an idle worker's waiter is set to when the worker is to end (None: work came).
_LEAVE: Final = object()


class _Worker(Seat):
    """One worker coroutine's state: its own cancel scope and the job it runs now."""

    __slots__ = ("deadline", "scope", "task")

    def __init__(self) -> None:
        super().__init__()
        self.scope: anyio.CancelScope | None = None
        self.task: asyncio.Task[Any] | None = None
        # The loop time the job running now must stop by (inf: none); see _deadlines_due.
        self.deadline = math.inf


class Runtime:
    """Runs jobs from a priority queue on a bounded set of supervised worker coroutines.

    Use it as ``async with Runtime(...) as rt:``; leaving the block drains the queue
    (``shutdown(wait=True)``), or cancels what is left if the block raised.

    :param workers: how many jobs run at once (worker coroutines)
    :param threads: how many thread jobs run at once (an anyio ``CapacityLimiter``)
    :param processes: how many process jobs run at once (None: ``os.cpu_count()``)
    :param max_pending: how many jobs may wait in the queue (None: no bound); running jobs
        do not count
    :param shutdown_timeout: how long leaving the block may drain before what is left is
        cancelled (None: as long as the jobs take)
    :param handle_signals: on the first SIGINT or SIGTERM, cancel the body of the
        ``async with`` block, stop taking work and drain within *shutdown_timeout*; on the
        second, cancel what is left. The block then ends without an error. Needs the event
        loop of the main thread.
    """

    # Slots, because the hot path reads a dozen of these per job: past 29 attributes in an
    # instance dict, CPython 3.11 stops sharing its keys and every such read takes the slow
    # path (measured: +300 instructions a job). __dict__ keeps monkeypatching in tests and
    # later additions working (a new attribute belongs here, though).
    __slots__ = (
        "__dict__",
        "_backoff",
        "_can_grow",
        "_closed",
        "_deadline_at",
        "_deadline_timer",
        "_drain_scope",
        "_hooks",
        "_hurry",
        "_idle",
        "_idle_low",
        "_intake_loop",
        "_join_waiters",
        "_links",
        "_live",
        "_loop",
        "_max_pending",
        "_memo",
        "_metrics",
        "_paused",
        "_plain_async",
        "_plain_thread",
        "_process_limiter",
        "_processes",
        "_queue",
        "_reaper",
        "_room_waiters",
        "_shutdown_timeout",
        "_signals",
        "_state",
        "_target",
        "_tg",
        "_thread_limiter",
        "_thread_pool",
        "_threads",
        "_workers",
    )

    def __init__(
        self,
        workers: int = 100,
        *,
        threads: int = 40,
        processes: int | None = None,
        max_pending: int | None = None,
        shutdown_timeout: float | None = None,
        handle_signals: bool = False,
    ) -> None:
        check_count("workers", workers)
        if shutdown_timeout is not None:
            check_seconds("shutdown_timeout", shutdown_timeout, allow_zero=True)
        if not isinstance(handle_signals, bool):
            raise TypeError(f"handle_signals must be a bool, got {handle_signals!r}")
        check_count("threads", threads)
        if processes is not None:
            check_count("processes", processes)
        if max_pending is not None:
            check_count("max_pending", max_pending)
        self._target = workers
        self._threads = threads
        self._processes = processes or os.cpu_count() or 1
        self._max_pending = max_pending
        self._shutdown_timeout = shutdown_timeout

        self._state = _NEW
        self._paused = False
        self._queue = JobQueue()
        self._metrics = Recorder()
        self._backoff: set[Job[Any]] = set()  # jobs waiting out a retry backoff
        self._workers: set[_Worker] = set()
        self._live = 0  # worker coroutines alive (or starting): at most _target, see resize
        # Whether a job that finds no idle worker starts one (fewer than _target alive and
        # not paused): kept up to date where those change, one read on the submit path.
        self._can_grow = False

        # The waiters of idle workers, the longest idle first: work wakes the most recently
        # parked (its caches are warm) and the reaper ends the longest idle.
        self._idle: deque[asyncio.Future[object]] = deque()
        self._idle_low = 0  # the fewest idle workers since the reaper last looked
        self._reaper: asyncio.TimerHandle | None = None
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        self._join_waiters: list[asyncio.Future[None]] = []
        # Replaced, never mutated, so that _end iterates a snapshot for free.
        self._hooks: tuple[Callable[[Job[Any]], object], ...] = ()
        # The options shared by the jobs submitted without any, by kind.
        self._plain_async = Options("async", self)
        self._plain_thread = Options("thread", self)
        self._memo = OptionsMemo()
        self._links = TokenLinks(self._cancel_linked)  # the jobs carrying tokens, by token
        # The one timer of the inline jobs' deadlines: set for the soonest of them.
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._deadline_at = math.inf

        self._tg: TaskGroup | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # The loop submit_nowait takes jobs on: ours while the runtime is open, else a
        # marker no running loop can be. One identity check serves both tests on the
        # fast path; _not_open() tells them apart for the error.
        self._intake_loop: object = _NO_INTAKE
        self._closed: anyio.Event | None = None
        self._thread_limiter: anyio.CapacityLimiter | None = None
        self._thread_pool: WorkerThreads | None = None  # started with the first thread job
        self._process_limiter: anyio.CapacityLimiter | None = None
        self._signals = SignalDrain(self) if handle_signals else None
        self._drain_scope: anyio.CancelScope | None = None  # a second signal cancels it
        self._hurry = False  # a second signal arrived: skip the drain

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        if self._state is not _NEW:
            raise RuntimeError(f"{self!r} can be started only once")
        self._loop = self._links.loop = asyncio.get_running_loop()
        if self._signals is not None:  # first: it is the step that can fail
            self._signals.subscribe()
        self._closed = anyio.Event()
        self._thread_limiter = anyio.CapacityLimiter(self._threads)
        self._process_limiter = anyio.CapacityLimiter(self._processes)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._state = _OPEN
        self._intake_loop = self._loop
        self._recheck_growth()
        if self._signals is not None:
            self._signals.enter_body()  # entered last, left first
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        stopped_by_signal = self._signals is not None and self._signals.leave_body(
            exc_type, exc, tb
        )
        if stopped_by_signal:
            exc_type, exc, tb = None, None, None
        try:
            if exc_type is None:
                await self.shutdown(wait=True, timeout=self._shutdown_timeout)
            elif issubclass(exc_type, Exception):
                await self.shutdown(wait=False, timeout=self._shutdown_timeout)
            else:  # cancelled or interrupted: nothing may be awaited, stop everything now
                self._abort("the runtime was cancelled")
        except BaseException as error:
            # Leaving the task group is still owed, whatever interrupted the shutdown.
            await self._leave_task_group(type(error), error, error.__traceback__)
            raise
        suppressed = await self._leave_task_group(exc_type, exc, tb)
        return True if stopped_by_signal else suppressed

    async def _leave_task_group(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # anyio wraps the block's own exception in a group; workers never raise, so a
            # group of just that exception goes back to the caller as itself.
            if exc is not None and group.exceptions == (exc,):
                return False
            raise
        finally:
            if self._signals is not None:
                self._signals.unsubscribe()

    @property
    def accepting(self) -> bool:
        """True while the runtime takes jobs (started, and not shutting down)."""
        return self._state is _OPEN

    def _hurry_up(self, reason: str) -> None:
        """A second signal: skip (or cut short) the drain and cancel every job."""
        self._hurry = True
        self._cancel_all(reason)
        if self._drain_scope is not None:
            self._drain_scope.cancel()

    async def shutdown(
        self, wait: bool = True, cancel_pending: bool = False, timeout: float | None = None
    ) -> None:
        """Stop taking work and stop the workers, in two phases.

        Phase one (``wait=True``): resume if paused and let the queued and running jobs
        finish, for up to *timeout* seconds (None: as long as they take). With
        ``cancel_pending=True`` queued jobs are cancelled first and only running ones drain.
        Phase two: whatever is left is cancelled and gets the rest of the deadline (with no
        timeout and ``wait=False``: one second) to stop; jobs still running after that
        (thread code that never calls ``check_cancelled()``) are abandoned, named in a
        warning, and end CANCELLED. Idempotent: later calls wait for the first to finish.
        ``RuntimeError`` when called from one of the runtime's own jobs (it would wait for
        itself).
        """
        deadline = _deadline("shutdown", timeout)
        self._check_not_own_job("shutdown()")
        if self._state is _NEW or self._closed is None:  # never started: nothing to stop
            self._state = _CLOSED
            return
        if self._state is not _OPEN:
            await self._closed.wait()
            return
        self._close_intake()
        try:
            await self._drain_then_cancel(wait, cancel_pending, deadline)
        except BaseException:  # shutdown itself was cancelled: finish the job at once
            self._abort("the shutdown was cancelled")
            raise
        self._finish_close(force=bool(self._unfinished()))

    async def _drain_then_cancel(self, wait: bool, cancel_pending: bool, deadline: float) -> None:
        wait = wait and not self._hurry
        if cancel_pending or not wait:
            self._cancel_waiting("cancelled by shutdown")
        if wait:
            self.resume()
            try:
                with anyio.CancelScope(deadline=deadline) as self._drain_scope:
                    await self._until_idle()
            finally:
                self._drain_scope = None
        if self._unfinished():
            self._cancel_all("cancelled by shutdown")
            if deadline == math.inf:
                deadline = anyio.current_time() + DEFAULT_GRACE
            with anyio.CancelScope(deadline=deadline):
                await self._until_idle()

    def _abort(self, reason: str) -> None:
        """Stop everything now, without awaiting anything."""
        if self._state is _CLOSED:
            return
        self._close_intake()
        self._cancel_all(reason)
        self._finish_close(force=True)

    def _finish_close(self, *, force: bool) -> None:
        self._memo.clear()  # it holds the last options, a token among them
        self._links.close()
        self._stop_workers(force=force)
        if self._thread_pool is not None:
            self._thread_pool.close()
        self._state = _CLOSED
        assert self._closed is not None
        self._closed.set()

    def _close_intake(self) -> None:
        self._state = _CLOSING
        self._intake_loop = _NO_INTAKE
        _wake_all(self._room_waiters)

    # -- submitting ----------------------------------------------------------------------

    @overload
    def submit_nowait(
        self,
        fn: Callable[[*Ts], Awaitable[T]],
        /,
        *args: *Ts,
        priority: int = ...,
        **options: Unpack[OtherOptions],
    ) -> Job[T]: ...

    @overload
    def submit_nowait(
        self,
        fn: Callable[[*Ts], T],
        /,
        *args: *Ts,
        priority: int = ...,
        **options: Unpack[OtherOptions],
    ) -> Job[T]: ...

    def submit_nowait(
        self,
        fn: Callable[[*Ts], Any],
        /,
        *args: *Ts,
        priority: int = _NORMAL,
        **options: Unpack[OtherOptions],
    ) -> Job[Any]:
        """Queue ``fn(*args)`` and return its handle at once.

        Raises :class:`QueueFull` when ``max_pending`` jobs are already queued and
        :class:`RuntimeClosed` once shutdown has begun; ``RuntimeError`` from another thread
        or event loop (use :class:`SyncRuntime` there). Options (all keyword-only):
        ``priority``, ``timeout`` (seconds per attempt), ``retry``, ``token``, ``name``,
        ``callback`` (called with the result on success), ``metadata`` and ``kind``.
        """
        if _running_loop() is not self._intake_loop:
            raise self._not_open()
        if options or priority.__class__ not in _PLAIN_INTS:
            # A loop submitting with the same timeout or token checks them once.
            opts = self._memo.lookup(options, fn) if priority.__class__ in _PLAIN_INTS else None
            if opts is None:
                priority, opts = parse_options(self, fn, args, None, options, priority)
                self._memo.remember(options, fn, opts)
            return self._accept(fn, args, None, priority, opts)
        # The fast path, for jobs with no options but a plain int priority: _accept without
        # a token to link, inlined (a call costs a twentieth of what a job does here).
        try:  # a function or bound method: its code object says if it is async
            is_async = fn.__code__.co_flags & _CO_COROUTINE
        except AttributeError:
            is_async = 0
        opts = self._plain_async if is_async else plain_options(self, fn)
        queue = self._queue
        if self._max_pending is not None and queue.pending >= self._max_pending:
            raise self._queue_full()
        metrics = self._metrics
        metrics.submitted = job_id = metrics.submitted + 1  # ids count the submitted jobs
        # Job.__init__, inlined: calling the class costs more than the ten stores.
        job: Job[Any] = _new_job(Job)
        job.id = job_id
        job.fn = fn
        job.args = args
        job.priority = priority
        job._opts = opts
        job._state = _PENDING
        job._attempts = 0
        job._queued_at = _now()
        job._outcome = None
        job._extras = None
        # JobQueue.push, inlined.
        level = queue._levels.get(priority)
        if level is None:
            level = queue._add_level(priority)
        level.append(job)
        queue.pending += 1
        if self._idle:
            self._wake_worker()
        elif self._can_grow:
            self._spawn_worker()
        return job

    @overload
    async def submit(
        self,
        fn: Callable[[*Ts], Awaitable[T]],
        /,
        *args: *Ts,
        **options: Unpack[JobOptions],
    ) -> Job[T]: ...

    @overload
    async def submit(
        self, fn: Callable[[*Ts], T], /, *args: *Ts, **options: Unpack[JobOptions]
    ) -> Job[T]: ...

    async def submit(
        self, fn: Callable[[*Ts], Any], /, *args: *Ts, **options: Unpack[JobOptions]
    ) -> Job[Any]:
        """Like :meth:`submit_nowait`, but waits for room when ``max_pending`` is reached."""
        if self._max_pending is not None:
            await self._wait_for_room()
        return self.submit_nowait(fn, *args, **options)

    def enqueue(self, unit: WorkUnit[T]) -> Job[T]:
        """Queue a :class:`WorkUnit` (it may carry kwargs); raises like :meth:`submit_nowait`."""
        if self._state is not _OPEN or _running_loop() is not self._loop:
            raise self._not_open()
        return self._accept(*parse_unit(self, unit))

    @overload
    async def run(
        self,
        fn: Callable[[*Ts], Awaitable[T]],
        /,
        *args: *Ts,
        **options: Unpack[JobOptions],
    ) -> T: ...

    @overload
    async def run(
        self, fn: Callable[[*Ts], T], /, *args: *Ts, **options: Unpack[JobOptions]
    ) -> T: ...

    async def run(
        self, fn: Callable[[*Ts], Any], /, *args: *Ts, **options: Unpack[JobOptions]
    ) -> Any:
        """Submit ``fn(*args)`` and wait for its result. Cancelling the caller cancels the job."""
        job = await self.submit(fn, *args, **options)
        try:
            return await job
        except anyio.get_cancelled_exc_class():
            job.cancel("the caller of run() was cancelled")
            raise

    # Overloads like submit's: with one union-typed parameter mypy cannot infer T, so
    # ``rt.map(coroutine_fn, items)`` would not type-check at all.
    @overload
    def map(
        self,
        fn: Callable[[Any], Awaitable[T]],
        items: Iterable[Any] | AsyncIterable[Any],
        /,
        *,
        window: int | None = None,
        return_exceptions: Literal[False] = False,
        **options: Unpack[JobOptions],
    ) -> AsyncGenerator[T, None]: ...

    @overload
    def map(
        self,
        fn: Callable[[Any], Awaitable[T]],
        items: Iterable[Any] | AsyncIterable[Any],
        /,
        *,
        window: int | None = None,
        return_exceptions: Literal[True],
        **options: Unpack[JobOptions],
    ) -> AsyncGenerator[T | BaseException, None]: ...

    @overload
    def map(
        self,
        fn: Callable[[Any], T],
        items: Iterable[Any] | AsyncIterable[Any],
        /,
        *,
        window: int | None = None,
        return_exceptions: Literal[False] = False,
        **options: Unpack[JobOptions],
    ) -> AsyncGenerator[T, None]: ...

    @overload
    def map(
        self,
        fn: Callable[[Any], T],
        items: Iterable[Any] | AsyncIterable[Any],
        /,
        *,
        window: int | None = None,
        return_exceptions: Literal[True],
        **options: Unpack[JobOptions],
    ) -> AsyncGenerator[T | BaseException, None]: ...

    async def map(
        self,
        fn: Callable[[Any], Any],
        items: Iterable[Any] | AsyncIterable[Any],
        /,
        *,
        window: int | None = None,
        return_exceptions: bool = False,
        **options: Unpack[JobOptions],
    ) -> AsyncGenerator[Any, None]:
        """Run ``fn(item)`` for every item and yield the results in input order.

        At most *window* jobs (default: twice the worker count) are in flight, so an endless
        iterable is fine. The first failure is raised and, like leaving the loop early,
        cancels the jobs still in flight; with ``return_exceptions=True`` (as in
        ``asyncio.gather``) a failed or cancelled job's exception is yielded in its place
        and the map goes on.
        """
        if window is None:
            window = max(2 * self._target, 1)  # the target is 0 once shut down
        check_count("window", window)
        if not callable(fn):
            raise TypeError(f"map() needs a callable, got {fn!r}")
        if not isinstance(return_exceptions, bool):
            raise TypeError(f"return_exceptions must be a bool, got {return_exceptions!r}")
        outcome = _outcome if return_exceptions else _result
        in_flight: deque[Job[Any]] = deque()
        try:
            async for item in _aiter(items):
                in_flight.append(await self.submit(fn, item, **options))
                if len(in_flight) >= window:
                    yield await outcome(in_flight.popleft())
            while in_flight:
                yield await outcome(in_flight.popleft())
        finally:
            for job in in_flight:
                job.cancel("map() was closed")

    # -- intake, shared with SyncRuntime ---------------------------------------------------

    def _submit_parsed(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any] | None,
        priority: int,
        opts: Options,
    ) -> Job[Any]:
        """Take a job whose options were checked already (by SyncRuntime, in its caller's
        thread); called on the loop."""
        if self._state is not _OPEN:
            raise self._not_open()
        return self._accept(fn, args, kwargs, priority, opts)

    def _queued_now(self) -> int:
        """How many jobs wait in the queue now (a plain read, safe from any thread)."""
        return self._queue.pending

    def _accept(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any] | None,
        priority: int,
        opts: Options,
    ) -> Job[Any]:
        """Make the handle and queue it (or end it at once, if its token is cancelled)."""
        if self._max_pending is not None and self._queue.pending >= self._max_pending:
            raise self._queue_full()
        extras = None if kwargs is None else Extras(kwargs)
        metrics = self._metrics
        metrics.submitted = job_id = metrics.submitted + 1  # ids count the submitted jobs
        job: Job[Any] = Job(job_id, fn, args, priority, opts, _now(), extras)
        token = opts.token
        if token is not None and not self._links.link(token, job):
            self._end(job, _CANCELLED, JobCancelled(token.reason))
            return job
        self._queue.push(job)
        if self._idle:
            self._wake_worker()
        elif self._can_grow:
            self._spawn_worker()
        return job

    async def _wait_for_room(self) -> None:
        """Wait until the bounded queue has room (or the runtime closes)."""
        assert self._max_pending is not None
        assert self._loop is not None
        while self._queue.pending >= self._max_pending and self._state is _OPEN:
            waiter = self._loop.create_future()
            self._room_waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                # Woken and cancelled at once: hand the room on to the next waiter.
                if waiter.done() and not waiter.cancelled():
                    _wake_one(self._room_waiters)
                raise

    def _check_own_loop(self, what: str) -> None:
        """Controls wake the workers' futures, which only the runtime's loop may touch."""
        loop = self._loop
        if loop is not None and _running_loop() is not loop and not loop.is_closed():
            raise RuntimeError(
                f"{what} must be called from the runtime's own event loop thread; from "
                "another thread, hand it over with loop.call_soon_threadsafe()"
            )

    def _queue_full(self) -> QueueFull:
        return QueueFull(f"the queue is full: max_pending={self._max_pending} jobs are waiting")

    def _check_not_own_job(self, what: str) -> None:
        job = current_job()
        if job is not None and job._opts.owner is self and not job.done():
            raise RuntimeError(
                f"{what} called from inside one of this runtime's jobs ({job.name!r}) would "
                "wait for that job itself; call it from outside the runtime's jobs"
            )

    def _not_open(self) -> Exception:
        if self._state is _OPEN:  # then the caller is not on our loop
            return RuntimeError(
                "submit_nowait()/enqueue() must be called from the runtime's own event loop "
                "thread; from other threads use SyncRuntime (its submit() is thread-safe), or "
                "hand the call to the loop with loop.call_soon_threadsafe()"
            )
        if self._state is _NEW:
            return RuntimeError("the runtime is not started: use 'async with Runtime(...) as rt:'")
        return RuntimeClosed(f"the runtime is {self._state} and takes no more jobs")

    # -- control -------------------------------------------------------------------------

    def pause(self) -> None:
        """Start no new jobs until :meth:`resume`; running jobs go on."""
        self._check_own_loop("pause()")
        self._paused = True
        self._recheck_growth()

    def resume(self) -> None:
        """Start jobs again after :meth:`pause`."""
        self._check_own_loop("resume()")
        self._paused = False
        self._recheck_growth()
        self._wake_all_workers()
        self._spawn_for_queue()

    @property
    def paused(self) -> bool:
        return self._paused

    def resize(self, workers: int) -> None:
        """Change how many jobs run at once. Surplus workers leave after their current job."""
        check_count("workers", workers)
        self._check_own_loop("resize()")
        self._target = workers
        self._recheck_growth()
        if self._state is _OPEN:
            if self._live > workers:
                self._wake_all_workers()
            self._spawn_for_queue()

    async def join(self, timeout: float | None = None) -> bool:
        """Wait until every submitted job has finished; False if *timeout* came first.

        ``RuntimeError`` when called from one of the runtime's own jobs (it would wait for
        itself).
        """
        deadline = _deadline("join", timeout)
        self._check_not_own_job("join()")
        with anyio.CancelScope(deadline=deadline):
            await self._until_idle()
        return not self._unfinished()

    def metrics(self) -> Metrics:
        """A frozen snapshot of the counters and latency percentiles."""
        return self._metrics.snapshot(
            running=self._count_running(),
            pending=self._queue.pending + len(self._backoff),
            workers=self._worker_count(),
            worker_tasks=self._live,
        )

    def on_complete(self, fn: Callable[[Job[Any]], object]) -> Callable[[], None]:
        """Call ``fn(job)`` once for every job that finishes, whatever its state.

        Returns a function that removes the hook. What the hook raises is logged.
        """
        if not callable(fn):
            raise TypeError(f"on_complete() needs a callable, got {fn!r}")
        self._hooks = (*self._hooks, fn)
        removed = False

        def remove() -> None:
            nonlocal removed
            if not removed:
                removed = True
                hooks = list(self._hooks)
                hooks.remove(fn)
                self._hooks = tuple(hooks)

        return remove

    def running_jobs(self) -> list[Job[Any]]:
        """The jobs running now."""
        return [w.job for w in self._workers if w.job is not None and w.job._state is _RUNNING]

    def _count_running(self) -> int:
        return len(self.running_jobs())

    def _unfinished(self) -> int:
        """Jobs submitted and not finished (pending, backing off or running): derived, so
        that the hot path keeps one counter fewer."""
        m = self._metrics
        return m.submitted - m.completed - m.failed - m.cancelled

    def __repr__(self) -> str:
        return (
            f"<Runtime state={self._state} workers={self._worker_count()} "
            f"running={self._count_running()} pending={self._queue.pending} "
            f"paused={self._paused}>"
        )

    # -- workers -----------------------------------------------------------------------

    def _worker_count(self) -> int:
        """The workers the runtime has: its cap (they start when work comes), or more while
        the surplus of a resize down finishes its jobs; 0 before the start."""
        return 0 if self._state is _NEW else max(self._target, self._live)

    def _recheck_growth(self) -> None:
        self._can_grow = self._live < self._target and not self._paused and self._state is not _NEW

    def _spawn_worker(self) -> None:
        """Start one more worker: a job came, every worker is busy and the runtime is not
        paused (as ThreadPoolExecutor starts a thread). Never more than the cap."""
        assert self._tg is not None
        self._live += 1
        self._recheck_growth()
        self._tg.start_soon(self._worker_main, _Worker(), name="asyncworkers-worker")

    def _spawn_for_queue(self) -> None:
        """Start the workers that the queued jobs need beyond the idle ones (after a resume
        or a resize up): a worker per job, up to the cap; none while paused."""
        wanted = 0 if self._paused else self._queue.pending - len(self._idle)
        while wanted > 0 and self._live < self._target:
            self._spawn_worker()
            wanted -= 1

    def _wake_worker(self) -> None:
        """Hand new work to the most recently parked idle worker."""
        idle = self._idle
        while idle:
            waiter = idle.pop()
            if not waiter.done():  # a waiter of a worker being cancelled is done
                waiter.set_result(None)
                break
        if len(idle) < self._idle_low:
            self._idle_low = len(idle)

    def _wake_all_workers(self) -> None:
        _wake_all(self._idle)
        self._idle_low = 0

    def _park(self, waiter: asyncio.Future[object]) -> None:
        """An idle worker waits on *waiter*; above the floor, the reaper starts looking."""
        self._idle.append(waiter)
        if self._reaper is None and self._live > _IDLE_FLOOR:
            assert self._loop is not None
            self._idle_low = len(self._idle)
            self._reaper = self._loop.call_later(_IDLE_GRACE, self._reap_idle)

    def _reap_idle(self) -> None:
        """End the idle workers above the floor that stayed idle since the last look.

        Work takes the most recently parked worker, so the ``_idle_low`` longest-idle
        waiters at the left of the deque have been idle all that time.
        """
        if self._reaper is not None:  # called early (by a test): one tick, not two
            self._reaper.cancel()
            self._reaper = None
        idle = self._idle
        surplus = min(self._idle_low, len(idle), self._live - _IDLE_FLOOR)
        for _ in range(surplus):
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(_LEAVE)
        if idle and self._live - surplus > _IDLE_FLOOR and self._state is not _CLOSED:
            assert self._loop is not None
            self._idle_low = len(idle)
            self._reaper = self._loop.call_later(_IDLE_GRACE, self._reap_idle)

    async def _worker_main(self, worker: _Worker) -> None:
        """A supervised worker: a bug that escapes a job's handling restarts the loop."""
        self._workers.add(worker)
        try:
            with anyio.CancelScope() as worker.scope:
                while True:
                    try:
                        await self._work(worker)
                        return
                    except Exception as exc:
                        self._worker_failed(worker, exc)
                    except asyncio.CancelledError as exc:
                        if worker.task is None or worker.task.cancelling():
                            raise  # the worker itself is being cancelled
                        # Nobody cancelled this worker: the job raised a CancelledError of
                        # its own (it awaited something someone else cancelled). That ends
                        # the job, never the worker, the runtime or the caller's block.
                        self._job_raised_cancelled(worker, exc)
        finally:
            self._live -= 1
            self._recheck_growth()
            self._workers.discard(worker)
            job = worker.job
            if job is not None and not job.done():
                self._end(job, _CANCELLED, _stop_or(job, "the runtime stopped its worker"))

    def _job_raised_cancelled(self, worker: _Worker, exc: asyncio.CancelledError) -> None:
        job, worker.job = worker.job, None
        if job is not None and not job.done():
            error = JobCancelled(f"job {job.name!r} raised CancelledError")
            error.__cause__ = exc
            self._settle(job, None, error)

    def _worker_failed(self, worker: _Worker, exc: Exception) -> None:
        self._metrics.worker_errors += 1
        logger.error("asyncworkers: a worker failed and was restarted", exc_info=exc)
        job, worker.job = worker.job, None
        if job is not None and not job.done():
            self._end(job, _FAILED, exc)

    async def _work(self, worker: _Worker) -> None:
        queue = self._queue
        task = worker.task = asyncio.current_task()
        assert task is not None
        _current_job.set(worker)  # current_job() is the job in this seat (see Seat)
        metrics = self._metrics
        wait_samples = metrics.wait_time.samples
        run_samples = metrics.run_time.samples
        assert self._loop is not None
        new_future = self._loop.create_future
        loop_time = self._loop.time
        park = self._park
        room_waiters = self._room_waiters
        heap, levels = queue._heap, queue._levels  # JobQueue.pop, inlined below
        streak = 0  # jobs run since this worker last let the loop run
        # When the last job ended, if nothing was awaited since: the next one starts then
        # (a microsecond later, in the same step), which saves reading the clock again.
        ended: float | None = None
        while self._live <= self._target:
            job = None
            if not self._paused:
                while heap:  # JobQueue.pop: the first PENDING job, tombstones dropped
                    level = levels[-heap[0]]
                    if not level:
                        del levels[-heappop(heap)]
                        continue
                    job = level.popleft()
                    if job._state is _PENDING:
                        queue.pending -= 1
                        break
                    queue._tombstones -= 1
                    job = None
            if job is None:
                # Park until a submit (or resume, resize, stop) wakes us, or the reaper
                # ends us; inline, because a helper coroutine here would be paid on every
                # idle wake.
                streak = 0
                ended = None
                metrics.trim_if_due()
                waiter = new_future()
                park(waiter)
                if await waiter is _LEAVE:
                    return
                continue
            if room_waiters:
                _wake_one(room_waiters)
            worker.job = job
            # start: queued -> running (see Job).
            job._state = _RUNNING
            job._attempts += 1
            if ended is None:
                job._started_at = started = _now()
            else:
                job._started_at = started = ended
                ended = None
            wait_samples.append(started - job._queued_at)
            opts = job._opts
            if opts.direct:
                # The hot path, kept in this loop: a helper coroutine per job costs as much
                # as the job. See _cancel_job for INJECTED.
                try:
                    extras = job._extras
                    if extras is None or extras.kwargs is None:
                        value = await job.fn(*job.args)
                    else:
                        value = await job.fn(*job.args, **extras.kwargs)
                except asyncio.CancelledError:
                    if job._hook is not INJECTED or task.uncancel():
                        raise  # not (only) ours: the worker itself is being cancelled
                    self._stopped(job)
                except (KeyboardInterrupt, SystemExit):
                    raise  # asyncio's meaning: they stop the loop, not just the job
                except BaseException as exc:  # an Exception, GeneratorExit, a user class
                    if job._hook is INJECTED:
                        task.uncancel()
                    self._settle(job, None, exc)
                else:
                    extras = job._extras
                    if extras is None or extras.stop is None:
                        # _end(job, _COMPLETED, value), inlined for the common case: a
                        # call here costs as much as all of the rest of _end.
                        now = _now()
                        run_samples.append(now - started)
                        job._state = _COMPLETED
                        waiters, job._outcome = job._outcome, value
                        job._finished_at = now
                        metrics.completed += 1
                        if (
                            not opts.plain
                            or waiters is not None
                            or self._hooks
                            or self._join_waiters
                        ):
                            self._after_end(job, _COMPLETED, value, waiters)
                        else:  # no user code ran since: the next job may start at `now`
                            ended = now
                    else:  # the job swallowed its cancellation; the stop still wins
                        if extras.hook is INJECTED:
                            task.uncancel()
                        self._stopped(job)
            elif opts.guarded:
                # A timeout or a token: still inline, no task and no cancel scope. The
                # deadline is this worker's, watched by the runtime's one deadline timer,
                # and a token's cancel comes through TokenLinks; both stop the job by
                # injecting task.cancel(), taken back with uncancel() as asyncio.timeout()
                # does, so that the job's own scopes and timeouts nest inside.
                timeout = opts.timeout
                if timeout is not None:
                    worker.deadline = deadline = loop_time() + timeout
                    if deadline < self._deadline_at:
                        self._arm_deadlines(deadline)
                try:
                    extras = job._extras
                    if extras is None or extras.kwargs is None:
                        value = await job.fn(*job.args)
                    else:
                        value = await job.fn(*job.args, **extras.kwargs)
                except asyncio.CancelledError:
                    worker.deadline = _INF
                    if job._hook is not INJECTED or task.uncancel():
                        raise  # not (only) ours: the worker itself is being cancelled
                    self._stopped(job)
                except (KeyboardInterrupt, SystemExit):
                    worker.deadline = _INF
                    raise
                except BaseException as exc:  # an Exception, GeneratorExit, a user class
                    worker.deadline = _INF
                    if job._hook is INJECTED:
                        task.uncancel()
                    self._settle(job, None, exc)
                else:
                    worker.deadline = _INF
                    extras = job._extras
                    if extras is None or extras.stop is None:
                        self._end(job, _COMPLETED, value)
                    else:  # it swallowed the cancel (or cancelled itself): the stop wins
                        if extras.hook is INJECTED:
                            task.uncancel()
                        self._stopped(job)
            elif opts.scoped:
                await self._run_scoped(job, opts)
            else:
                await self._run_thread(job, opts)
            worker.job = None
            streak += 1
            if streak == _FAIR_STREAK:
                # Jobs that never suspend would otherwise run back to back and starve the
                # loop: timers, I/O and the tasks waiting for results all wait on us. The
                # latency samples are trimmed here too, rather than checked on every job.
                streak = 0
                ended = None
                metrics.trim_if_due()
                await asyncio.sleep(0)

    def _stop_workers(self, *, force: bool) -> None:
        self._target = 0
        self._recheck_growth()
        self._wake_all_workers()
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
            self._deadline_at = _INF
        if force:
            self._abandon_threads()
            for worker in self._workers:
                if worker.scope is not None:
                    worker.scope.cancel()

    def _abandon_threads(self) -> None:
        """Coroutines and processes stop when their worker is cancelled; a thread cannot be
        stopped, so a thread job still running now is left behind, and said so. Only jobs
        holding a thread token started; those waiting for one just end."""
        limiter = self._thread_limiter
        in_threads = set(limiter.statistics().borrowers) if limiter is not None else set()
        stuck = [job for job in self.running_jobs() if job in in_threads]
        if not stuck:
            return
        logger.warning(
            "asyncworkers: abandoning %d thread job(s) still running when the runtime "
            "stopped (a thread stops only at check_cancelled()): %s",
            len(stuck),
            ", ".join(f"{job.name} (id {job.id})" for job in stuck),
        )
        # Threads started from a daemon thread are daemons: keep the interpreter alive
        # until these have returned, so that their work is not cut off at exit.
        assert self._thread_pool is not None  # a job held a thread token
        keep_alive_while(self._thread_pool.threads_running(stuck))
        for job in stuck:  # settled now: shutdown() returns with every job done
            self._end(job, _CANCELLED, _stop_or(job, "abandoned when the runtime stopped"))

    # -- running one job off the hot path ----------------------------------------------

    def _arm_deadlines(self, at: float) -> None:
        """Set the deadline timer for *at*, sooner than it was set for (if it was)."""
        assert self._loop is not None
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        self._deadline_at = at
        self._deadline_timer = self._loop.call_at(at, self._deadlines_due)

    def _deadlines_due(self) -> None:
        """The deadline timer: time out the inline jobs whose deadline has passed, and set
        the timer for the soonest of the others.

        One timer for every worker, rather than one per job: a job only writes its
        deadline on its worker (and arms the timer when it is the soonest), so a job that
        ends in time costs no timer at all. The timer fires about once per timeout period,
        and looks at each live worker then.
        """
        assert self._loop is not None
        self._deadline_timer = None
        self._deadline_at = _INF
        now = self._loop.time()
        soonest = _INF
        for worker in list(self._workers):
            deadline = worker.deadline
            if deadline <= now:
                worker.deadline = _INF  # one stop per deadline
                job, task = worker.job, worker.task
                if job is not None and task is not None:
                    self._expire_inline(job, task)
            elif deadline < soonest:
                soonest = deadline
        if soonest != _INF and self._state is not _CLOSED:
            self._arm_deadlines(soonest)

    def _expire_inline(self, job: Job[Any], task: asyncio.Task[Any]) -> None:
        """An inline job's deadline: stop it with JobTimeout, unless a stop came first (a
        stop beats a timeout; one that the job asked for itself, which injects nothing, is
        carried out now). The timer is cancelled when the attempt ends."""
        if job._state is not _RUNNING:
            return
        if job._stop is None:
            timeout = job._opts.timeout
            job._ask_to_stop(JobTimeout(f"job {job.name!r} timed out after {timeout} s"))
        if job._hook is not INJECTED:
            task.cancel()
            job._set_hook(INJECTED)

    async def _run_scoped(self, job: Job[Any], opts: Options) -> None:
        """A process job, under an anyio cancel scope: the process bridge is anyio code,
        and its cancellation stops the worker process."""
        timeout = opts.timeout
        deadline = math.inf if timeout is None else anyio.current_time() + timeout
        value: Any = None
        error: BaseException | None = None
        extras = job._extras_made()  # the scope is its hook
        with anyio.CancelScope(deadline=deadline) as scope:
            extras.hook = scope
            try:
                assert self._process_limiter is not None
                value = await run_in_process(job, self._process_limiter)
            except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                raise  # the scope's (or the worker's) cancellation, or asyncio's meaning
            except BaseException as exc:
                error = _unwrap(exc)
        extras.hook = None
        if scope.cancel_called and extras.stop is None:
            extras.stop = JobTimeout(f"job {job.name!r} timed out after {timeout} s")
        self._settle(job, value, error)

    async def _run_thread(self, job: Job[Any], opts: Options) -> None:
        assert self._loop is not None
        assert self._thread_limiter is not None
        pool = self._thread_pool
        if pool is None:
            pool = self._thread_pool = WorkerThreads(self._loop)
        timer = None
        if opts.timeout is not None:
            timer = self._loop.call_later(opts.timeout, self._expire, job)
        value: Any = None
        error: BaseException | None = None
        try:
            value = await run_in_thread(job, self._thread_limiter, pool)
        except Exception as exc:
            error = _unwrap(exc)
        finally:
            if timer is not None:
                timer.cancel()
        if not job.done():  # else abandoned by _stop_workers, already settled
            self._settle(job, value, error)

    def _expire(self, job: Job[Any]) -> None:
        """A thread job's deadline: ask it to stop; check_cancelled() raises JobTimeout."""
        if job._state is _RUNNING and job._stop is None:
            timeout = job._opts.timeout
            hook = job._ask_to_stop(JobTimeout(f"job {job.name!r} timed out after {timeout} s"))
            if isinstance(hook, anyio.CancelScope):  # still waiting for a free thread
                hook.cancel()

    # -- outcomes ------------------------------------------------------------------------

    def _settle(self, job: Job[Any], value: Any, error: BaseException | None) -> None:
        extras = job._extras
        if extras is not None and extras.stop is not None:  # a stop wins over what followed
            self._stopped(job)
        elif error is None:
            self._end(job, _COMPLETED, value)
        elif isinstance(error, JobCancelled):
            self._end(job, _CANCELLED, error)
        else:
            self._failed(job, error)

    def _stopped(self, job: Job[Any]) -> None:
        extras = job._extras_made()
        stop = extras.stop
        assert stop is not None
        if isinstance(stop, JobTimeout):
            extras.stop = None  # a timeout may be retried; the next attempt starts clean
            self._failed(job, stop)
        else:
            self._end(job, _CANCELLED, stop)

    def _failed(self, job: Job[Any], error: BaseException) -> None:
        retry = job._opts.retry
        if (
            retry is not None
            and self._state is not _CLOSED
            and retry.should_retry(error, job._attempts)
        ):
            self._retry_later(job, retry)
        else:
            self._end(job, _FAILED, error)

    def _retry_later(self, job: Job[Any], retry: Retry) -> None:
        assert self._loop is not None
        self._metrics.retried += 1
        delay = min(retry.delay(job._attempts), _LONGEST_BACKOFF)
        job._back_off(self._loop.call_later(delay, self._requeue, job))
        self._backoff.add(job)

    def _requeue(self, job: Job[Any]) -> None:
        """A retry's backoff is over: it goes ahead of the jobs of its priority, which were
        all queued after its first attempt started (FIFO), so that a retry never waits
        behind the whole queue again."""
        self._backoff.discard(job)
        job._requeue(_now())
        self._queue.push_front(job)
        if self._idle:
            self._wake_worker()
        elif self._can_grow:
            self._spawn_worker()

    def _end(self, job: Job[Any], state: JobState, value: Any) -> None:
        """The one way into a terminal state: counters, hooks and waiters, once per job."""
        now = _now()
        metrics = self._metrics
        if job._state is _RUNNING:  # trimmed by the workers (see _work)
            metrics.run_time.samples.append(now - job._started_at)
        job._state = state
        waiters, job._outcome = job._outcome, value
        job._finished_at = now
        if state is _COMPLETED:
            metrics.completed += 1
        else:
            job._extras_made().tb = value.__traceback__
            if state is _FAILED:
                metrics.failed += 1
            else:
                metrics.cancelled += 1
        if not job._opts.plain or waiters is not None or self._hooks or self._join_waiters:
            self._after_end(job, state, value, waiters)

    def _after_end(
        self, job: Job[Any], state: JobState, value: Any, waiters: list[Any] | None
    ) -> None:
        """What follows a job's end: its token, join() waiters, then the user's code (the
        callback, the done-callbacks and waiters of the handle, the hooks)."""
        opts = job._opts
        if not opts.plain and opts.token is not None:
            self._links.unlink(opts.token, job)
        # The runtime's own bookkeeping is done before any user code runs, so that a
        # KeyboardInterrupt from a hook cannot lose a join() wake-up.
        if self._join_waiters and not self._unfinished():
            joiners, self._join_waiters = self._join_waiters, []
            _wake_all(joiners)
        if not opts.plain and state is _COMPLETED and opts.callback is not None:
            call_logged(opts.callback, value)
        if waiters is not None:
            job._run_callbacks(waiters)
        if hooks := self._hooks:  # a tuple: a hook that removes itself changes no loop
            for hook in hooks:
                call_logged(hook, job)

    # -- cancelling ----------------------------------------------------------------------

    def _cancel_linked(self, jobs: list[Job[Any]], reason: str | None) -> None:
        """A token was cancelled: cancel its jobs, the running ones through the worker
        that runs each (one pass over the workers, not one search per job)."""
        for job in jobs:
            if job._state is _PENDING:
                self._cancel_job(job, reason)
        linked = set(jobs)
        for worker in list(self._workers):
            running = worker.job
            if running is not None and running in linked and running._state is _RUNNING:
                self._cancel_job(running, reason, worker.task)

    def _cancel_job(
        self, job: Job[Any], reason: str | None, task: asyncio.Task[Any] | None = None
    ) -> bool:
        """Cancel *job*; *task* is the worker task running it, when the caller knows."""
        if job.done():
            return False
        loop = self._loop
        if loop is not None and _running_loop() is not loop:
            # Called from another thread (or loop): the job's state belongs to our loop, so
            # the cancel is carried out there, soon. It is pending or running now.
            try:
                loop.call_soon_threadsafe(self._cancel_job, job, reason)
            except RuntimeError:  # a closed loop: the job has ended with it
                return False
            return True
        if job._state is _PENDING:
            timer = job._hook
            if isinstance(timer, asyncio.TimerHandle):  # waiting out a retry backoff
                timer.cancel()
                self._backoff.discard(job)
            else:  # in the queue: it stays there as a tombstone for the workers to skip
                self._queue.discard(job)
                if self._room_waiters:
                    _wake_one(self._room_waiters)
            self._end(job, _CANCELLED, JobCancelled(reason))
            return True
        if not isinstance(job._stop, JobCancelled):
            # An explicit stop wins over a timeout that fired first (a thread job that has
            # not reached check_cancelled() yet): the job ends CANCELLED, never retried.
            hook = job._ask_to_stop(JobCancelled(reason))
            if isinstance(hook, anyio.CancelScope):
                hook.cancel()
            elif job._opts.inline and hook is not INJECTED:
                # One injected cancel per attempt, as asyncio.timeout() sends one: a stop
                # after a timeout fired only changes the outcome to CANCELLED.
                if task is None:
                    task = self._task_running(job)
                if task is not None and task is not asyncio.current_task():
                    task.cancel()
                    job._set_hook(INJECTED)
            # A thread job stops at its next check_cancelled(); a job that cancels itself
            # ends CANCELLED when it returns.
        return True

    def _task_running(self, job: Job[Any]) -> asyncio.Task[Any] | None:
        for worker in self._workers:
            if worker.job is job:
                return worker.task
        return None

    def _cancel_waiting(self, reason: str) -> None:
        """Cancel the queued jobs and those backing off before a retry."""
        for job in self._queue.drain():
            self._end(job, _CANCELLED, JobCancelled(reason))
        for job in list(self._backoff):
            self._cancel_job(job, reason)

    def _cancel_all(self, reason: str) -> None:
        self._cancel_waiting(reason)
        for worker in list(self._workers):  # with its task: no search per job
            job = worker.job
            if job is not None and job._state is _RUNNING:
                self._cancel_job(job, reason, worker.task)

    async def _until_idle(self) -> None:
        while self._unfinished():
            assert self._loop is not None
            waiter = self._loop.create_future()
            self._join_waiters.append(waiter)
            await waiter


def _deadline(what: str, timeout: float | None) -> float:
    if timeout is None:
        return math.inf
    return anyio.current_time() + check_seconds(f"{what}(timeout=...)", timeout, allow_zero=True)


def _unwrap(error: BaseException) -> BaseException:
    return error.error if isinstance(error, JobRaised) else error


def _stop_or(job: Job[Any], reason: str) -> AsyncworkersError:
    stop = job._stop
    return stop if isinstance(stop, JobCancelled) else JobCancelled(reason)


def _wake_one(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return


def _wake_all(waiters: Iterable[asyncio.Future[Any]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
    if isinstance(waiters, deque | list):
        waiters.clear()


async def _result(job: Job[T]) -> T:
    return await job


async def _outcome(job: Job[T]) -> T | BaseException:
    await job.wait()
    error = job.exception()
    return job.result() if error is None else error


async def _aiter(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
