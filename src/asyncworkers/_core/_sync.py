"""SyncRuntime: the runtime for plain threads, over an anyio blocking portal.

An event loop runs in one background thread (anyio's ``start_blocking_portal``, on uvloop
when it is installed) and a :class:`Runtime` runs inside it, owned by one long-lived "host"
task so that its task group is entered and left by the same task.

Submitting is the hot path and never waits for the loop: the calling thread appends the
job to an intake list and, only when no drain is already on its way, schedules one
``call_soon_threadsafe`` that drains the whole list into ``Runtime.submit_nowait``. Many
producer threads thus share one wake-up of the loop. (With ``max_pending`` set, a submit
waits for room instead: one round trip per job.) The job's done-callback resolves the
``concurrent.futures.Future`` handed back. Rare operations (``join``, ``metrics``,
``shutdown``, ``Future.cancel``) take the portal's full round trip and first drain the
intake, so that they see every job submitted before them.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
from _thread import get_ident
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Final, Literal, TypeVar, TypeVarTuple, Unpack, overload

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._bridges import check_picklable
from ._exceptions import JobCancelled, QueueFull, RuntimeClosed
from ._future import LeanFuture
from ._lifecycle import Lifecycle
from ._metrics import Metrics
from ._options import JobOptions, Options, parse_options, parse_unit, plain_options
from ._runtime import Runtime
from ._signals import uvloop_available
from ._units import Job, JobState, Priority, WorkUnit, current_job
from ._validate import check_count, check_seconds

__all__ = ["SyncRuntime"]

T = TypeVar("T")
A = TypeVar("A")
Ts = TypeVarTuple("Ts")

# Lifecycle of a SyncRuntime.
_NEW: Final = Lifecycle.NEW
_STARTING: Final = Lifecycle.STARTING
_OPEN: Final = Lifecycle.OPEN
_CLOSING: Final = Lifecycle.CLOSING
_CLOSED: Final = Lifecycle.CLOSED

_COMPLETED: Final = JobState.COMPLETED
_NORMAL: Final = int(Priority.NORMAL)

# A checked job, ready for the runtime: function, args, kwargs, priority and options.
_Parsed = tuple[Callable[..., Any], tuple[Any, ...], "Mapping[str, Any] | None", int, Options]
# One job handed in from a thread and not yet submitted: its future and the job.
_Item = tuple["_JobFuture[Any]", _Parsed]

_LOOP_THREAD_ERROR: Final = (
    "{what} would block the event loop of this SyncRuntime, which runs the job that called "
    "it (a deadlock); in code running on that loop use the job's own awaits instead"
)


class _JobFuture(LeanFuture[T]):
    """The ``concurrent.futures.Future`` of one job.

    It ends the way the job ends: with its result, its exception or, cancelled by any means
    (``cancel()`` here, a token, ``job.cancel()``, shutdown), with :class:`JobCancelled`.
    A :class:`LeanFuture`: the round trip of a sync caller is mostly its future's.
    """

    # Each SyncRuntime makes its own subclass, which names the runtime (and, while its loop
    # runs, the loop's thread as _no_wait_ident): a future is then made without an
    # argument, and result() checks the thread inline.
    _owner: SyncRuntime
    # Class defaults, set per future only when they change: a store less per job.
    _job: Job[T] | None = None
    # Set when cancel() came before the job was handed to the runtime (loop thread only).
    _stop_reason: str | None = None

    # -- what a user calls ----------------------------------------------------------------

    def cancel(self) -> bool:
        """Cancel the job: a pending one never starts, a running one is asked to stop.

        Returns True if the job was pending or running, False if it had already finished.
        The future then ends, once the job has stopped, with :class:`JobCancelled`: it never
        enters the CANCELLED state of ``concurrent.futures``, so ``cancelled()`` stays False
        and ``result()`` raises ``JobCancelled`` like every other way a job is cancelled.
        """
        if self.done():
            return False
        owner = self._owner
        if get_ident() == owner._loop_ident:
            return self._cancel_in_loop()
        try:
            return owner._call(self._cancel_in_loop)
        except RuntimeClosed:  # the loop is gone, and every job with it
            return False

    def _check_may_wait(self, what: str, timeout: float | None) -> None:
        self._owner._check_may_block(what, timeout)

    # -- what the runtime calls, on its loop ------------------------------------------------

    def _attach(self, job: Job[T]) -> None:
        self._job = job
        job.add_done_callback(self._job_done)

    def _job_done(self, job: Job[T]) -> None:
        self._job = None
        if job._state is _COMPLETED:
            self._finish(job._outcome, None)
        else:
            self._finish(None, job.exception())

    def _cancel_in_loop(self, reason: str = "the future was cancelled") -> bool:
        if self.done():
            return False
        if self._job is None:
            self._owner._drain_intake()
        job = self._job
        if job is not None:
            return job.cancel(reason)
        if self._stop_reason is None:  # in a batch being drained right now
            self._stop_reason = reason
            return True
        return False

    def _cancel_soon(self, reason: str) -> None:
        """Ask for the job to be cancelled without waiting (the caller is going away)."""
        owner = self._owner
        if self.done():
            return
        if get_ident() == owner._loop_ident:
            self._cancel_in_loop(reason)
        elif owner._loop is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: the job has ended
                owner._loop.call_soon_threadsafe(self._cancel_in_loop, reason)


class SyncRuntime:
    """The runtime for sync programs: a :class:`Runtime` on an event loop in a thread.

    Use it as ``with SyncRuntime(...) as rt:``, or call :meth:`start` and, later,
    :meth:`shutdown` yourself; it starts once, never lazily. Leaving the block drains
    (``shutdown(wait=True, timeout=shutdown_timeout)``); if the block raised an exception it
    shuts down with ``wait=False``, and on ``KeyboardInterrupt`` (or any other
    ``BaseException``) it cancels everything at once. In every case the loop thread has
    ended when the block is left.

    Every method may be called from any number of threads at once. ``submit``, ``enqueue``
    and ``map`` return ``concurrent.futures.Future`` objects resolved with the job's
    result, or its exception (:class:`JobCancelled` when it was cancelled, however).

    :param workers: how many jobs run at once
    :param threads: how many thread jobs run at once
    :param processes: how many process jobs run at once (None: ``os.cpu_count()``)
    :param max_pending: how many jobs may wait in the queue (None: no bound); when they
        do, ``submit`` and ``enqueue`` block the calling thread until there is room
    :param shutdown_timeout: how long leaving the block may drain before what is left is
        cancelled (None: as long as the jobs take)
    :param use_uvloop: run the loop on uvloop (None: when it is installed)
    """

    def __init__(
        self,
        workers: int = 100,
        *,
        threads: int = 40,
        processes: int | None = None,
        max_pending: int | None = None,
        shutdown_timeout: float | None = None,
        use_uvloop: bool | None = None,
    ) -> None:
        if use_uvloop is None:
            use_uvloop = uvloop_available()
        elif not isinstance(use_uvloop, bool):
            raise TypeError(f"use_uvloop must be a bool or None, got {use_uvloop!r}")
        elif use_uvloop and not uvloop_available():
            raise RuntimeError("use_uvloop=True, but uvloop is not installed")
        self._runtime = Runtime(
            workers,
            threads=threads,
            processes=processes,
            max_pending=max_pending,
            shutdown_timeout=shutdown_timeout,
        )
        self._shutdown_timeout = shutdown_timeout
        self._workers = workers
        self._max_pending = max_pending
        self._use_uvloop = use_uvloop

        self._lock = threading.Lock()
        self._state: Lifecycle = _NEW
        self._intake: list[_Item] = []
        self._scheduled = False  # a drain of the intake is scheduled on the loop
        self._stopped = threading.Event()  # set once the loop thread has ended

        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._loop_ident: int | None = None
        self._future_type: type[_JobFuture[Any]] = type(
            "_JobFuture", (_JobFuture,), {"_owner": self}
        )
        self._host_scope: anyio.CancelScope | None = None
        self._host_done: anyio.Event | None = None
        self._admitters: TaskGroup | None = None  # tasks waiting for room (max_pending)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> SyncRuntime:
        """Start the loop thread and the runtime in it; returns the runtime itself.

        A SyncRuntime starts once: ``RuntimeError`` if it was started (or shut down) before.
        A runtime still open when the interpreter exits is shut down with ``wait=False``.
        """
        with self._lock:
            if self._state is not _NEW:
                raise RuntimeError(f"{self!r} can be started only once")
            self._state = _STARTING
        try:
            portal_cm = start_blocking_portal("asyncio", {"use_uvloop": self._use_uvloop})
            portal = portal_cm.__enter__()
            try:
                _, (loop, thread) = portal.start_task(self._host, name="asyncworkers-sync-host")
            except BaseException as exc:
                portal_cm.__exit__(type(exc), exc, exc.__traceback__)
                raise
        except BaseException:
            with self._lock:
                self._state = _CLOSED
            self._stopped.set()
            raise
        with self._lock:
            self._portal_cm = portal_cm
            self._portal = portal
            self._loop = loop
            self._thread = thread
            self._loop_ident = self._future_type._no_wait_ident = thread.ident
            self._state = _OPEN
        atexit.register(self._at_exit)
        return self

    def __enter__(self) -> SyncRuntime:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.shutdown(wait=True, timeout=self._shutdown_timeout)
        elif issubclass(exc_type, Exception):
            self.shutdown(wait=False, timeout=self._shutdown_timeout)
        else:  # KeyboardInterrupt, SystemExit: stop everything now
            self._close(None)

    def shutdown(
        self, wait: bool = True, cancel_pending: bool = False, timeout: float | None = None
    ) -> None:
        """Stop taking work, stop the runtime as :meth:`Runtime.shutdown` does, and end the
        loop thread; blocks until it has ended.

        ``wait=True`` drains the queued and running jobs (for up to *timeout* seconds), with
        ``cancel_pending=True`` only the running ones; what is left is then cancelled. Jobs
        submitted before the call are part of the drain. Idempotent and thread-safe: later
        calls wait for the first to finish. Interrupted (``KeyboardInterrupt``) while it
        drains, it cancels everything at once, ends the thread and re-raises. Calling it
        from the runtime's own loop raises ``RuntimeError``.
        """
        _check_wait("shutdown", timeout)
        self._close((bool(wait), bool(cancel_pending), timeout))

    def _close(self, graceful: tuple[bool, bool, float | None] | None) -> None:
        """Shut down (graceful: the arguments of shutdown) or abort (None)."""
        if get_ident() == self._loop_ident:
            raise RuntimeError(_LOOP_THREAD_ERROR.format(what="shutdown()"))
        self._check_not_own_job("shutdown()")
        with self._lock:
            state = self._state
            if state is _NEW:
                self._state = _CLOSED
                self._stopped.set()
                return
            if state is _STARTING:
                raise RuntimeError(f"{self!r} is being started by another thread")
            owner = state is _OPEN
            if owner:
                self._state = _CLOSING
        if not owner:
            if graceful is None and state is _CLOSING:
                self._cancel_host()  # escalate the graceful shutdown under way
            self._stopped.wait()
            return
        try:
            if graceful is None:
                self._cancel_host()
            else:
                portal = self._portal
                assert portal is not None
                try:
                    portal.call(self._shutdown_in_loop, *graceful)
                except BaseException:
                    self._cancel_host()  # interrupted: stop everything now, then re-raise
                    raise
        finally:
            self._stop_thread()

    def _stop_thread(self) -> None:
        """Stop the portal, join the loop thread and fail whatever was never handed in."""
        portal_cm = self._portal_cm
        assert portal_cm is not None
        try:
            portal_cm.__exit__(None, None, None)
        finally:
            atexit.unregister(self._at_exit)
            with self._lock:
                self._state = _CLOSED
                leftovers, self._intake = self._intake, []
                self._loop_ident = None
            for future, *_ in leftovers:
                if not future.done():
                    future.set_exception(RuntimeClosed("the runtime shut down before the job"))
            self._stopped.set()

    def _cancel_host(self) -> None:
        """Cancel the host task: the runtime inside it stops everything without waiting."""
        loop, scope = self._loop, self._host_scope
        if loop is not None and scope is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                loop.call_soon_threadsafe(scope.cancel)

    def _at_exit(self) -> None:
        self.shutdown(wait=False)

    # -- the loop side -------------------------------------------------------------------

    async def _host(
        self,
        *,
        task_status: TaskStatus[tuple[asyncio.AbstractEventLoop, threading.Thread]],
    ) -> None:
        """The task that owns the runtime, for the whole life of the loop."""
        thread = threading.current_thread()
        thread.name = f"asyncworkers-sync-{id(self):x}"
        _mark_asyncio_thread()
        self._host_done = anyio.Event()
        try:
            with anyio.CancelScope() as self._host_scope:
                async with self._runtime, anyio.create_task_group() as self._admitters:
                    task_status.started((asyncio.get_running_loop(), thread))
                    await self._host_done.wait()
            # Whatever came in after the runtime closed gets RuntimeClosed from it.
            self._drain_intake()
        finally:
            # No job code runs on this thread after this point. Forget its ident now, from
            # the thread itself: once the thread has ended, a new thread may get the same
            # ident and must not be taken for the loop thread.
            self._loop_ident = self._future_type._no_wait_ident = None

    async def _shutdown_in_loop(
        self, wait: bool, cancel_pending: bool, timeout: float | None
    ) -> None:
        self._drain_intake()
        try:
            await self._runtime.shutdown(wait=wait, cancel_pending=cancel_pending, timeout=timeout)
        finally:
            assert self._host_done is not None
            self._host_done.set()

    def _drain_intake(self) -> None:
        """Hand every job waiting in the intake to the runtime (on the loop).

        With ``max_pending``, a thread submits without waiting while the queue has room;
        if others filled it meanwhile, the jobs that no longer fit wait for room here, in
        order, in an admitting task, instead of failing with QueueFull.
        """
        with self._lock:
            batch, self._intake = self._intake, []
            self._scheduled = False
        runtime = self._runtime
        for index, (future, parsed) in enumerate(batch):
            if future._stop_reason is not None:
                future.set_exception(JobCancelled(future._stop_reason))
                continue
            try:
                job = runtime._submit_parsed(*parsed)
            except QueueFull:
                assert self._admitters is not None
                self._admitters.start_soon(self._admit, batch[index:])
                return
            except Exception as exc:
                future.set_exception(exc)
            else:  # future._attach(job), inlined: this runs once per job
                future._job = job
                job.add_done_callback(future._job_done)

    async def _admit(self, items: list[_Item]) -> None:
        """Submit jobs in order, each once the bounded queue has room for it."""
        runtime = self._runtime
        try:
            while items:
                future, parsed = items[0]
                if future._stop_reason is not None:
                    future.set_exception(JobCancelled(future._stop_reason))
                else:
                    try:
                        await runtime._wait_for_room()
                        future._attach(runtime._submit_parsed(*parsed))
                    except Exception as exc:
                        future.set_exception(exc)
                items.pop(0)
        finally:  # cancelled (the runtime is being torn down): nothing is left unresolved
            for future, _ in items:
                if not future.done():
                    future.set_exception(RuntimeClosed("the runtime shut down before the job"))

    # -- submitting ----------------------------------------------------------------------

    @overload
    def submit(
        self,
        fn: Callable[[*Ts], Awaitable[T]],
        /,
        *args: *Ts,
        **options: Unpack[JobOptions],
    ) -> Future[T]: ...

    @overload
    def submit(
        self, fn: Callable[[*Ts], T], /, *args: *Ts, **options: Unpack[JobOptions]
    ) -> Future[T]: ...

    def submit(
        self, fn: Callable[[*Ts], Any], /, *args: *Ts, **options: Unpack[JobOptions]
    ) -> Future[Any]:
        """Queue ``fn(*args)`` and return a ``concurrent.futures.Future`` of its result.

        *fn* may be a coroutine function (run on the loop) or a plain callable (run in a
        thread). Options are those of :meth:`Runtime.submit_nowait`; bad ones raise
        ``TypeError``/``ValueError`` here, in the calling thread. With ``max_pending``
        set, blocks while the queue is full. Raises :class:`RuntimeClosed` once shutdown
        has begun and ``RuntimeError`` before :meth:`start`.
        """
        if options:
            return self._hand_in(self._parse(fn, args, options))
        return self._hand_in((fn, args, None, _NORMAL, plain_options(self._runtime, fn)))

    def enqueue(self, unit: WorkUnit[T]) -> Future[T]:
        """Queue a :class:`WorkUnit` (it may carry kwargs and a callback); like :meth:`submit`."""
        return self._hand_in(parse_unit(self._runtime, unit))

    def _parse(
        self, fn: Callable[..., Any], args: tuple[Any, ...], options: Mapping[str, Any]
    ) -> _Parsed:
        """Check a job here, in the calling thread, so that bad input fails at the call."""
        if options:
            priority, opts = parse_options(self._runtime, fn, args, None, options)
        else:
            priority, opts = _NORMAL, plain_options(self._runtime, fn)
        return fn, args, None, priority, opts

    def _hand_in(self, parsed: _Parsed, future: _JobFuture[Any] | None = None) -> _JobFuture[Any]:
        if future is None:
            future = self._future_type()
        if get_ident() == self._loop_ident:
            return self._hand_in_on_loop(future, parsed)
        if self._max_pending is not None and self._looks_full():
            return self._hand_in_when_room(future, parsed)
        with self._lock:
            if self._state is not _OPEN:
                raise self._not_open()
            self._intake.append((future, parsed))
            if self._scheduled:  # a drain is on its way and will take this job too
                return future
            self._scheduled = True
        loop = self._loop
        assert loop is not None
        try:
            loop.call_soon_threadsafe(self._drain_intake)
        except RuntimeError:
            # The loop closed under us: the job was taken by its last drain, or the shutdown
            # that closed it fails the job with RuntimeClosed.
            pass
        except BaseException:
            self._scheduled = False  # interrupted: let the next submit schedule the drain
            raise
        return future

    def _looks_full(self) -> bool:
        """Whether the bounded queue is full, as far as this thread can tell without a trip
        to the loop: the jobs queued there plus those on their way. A bound then costs
        nothing until it is reached; a race past it is caught by the drain (see _admit)."""
        assert self._max_pending is not None
        return len(self._intake) + self._runtime._queued_now() >= self._max_pending

    def _hand_in_on_loop(self, future: _JobFuture[Any], parsed: _Parsed) -> _JobFuture[Any]:
        """Called from a job on the runtime's own loop: submit at once, never block."""
        self._drain_intake()  # keep the jobs handed in from threads first
        future._attach(self._runtime._submit_parsed(*parsed))
        return future

    def _hand_in_when_room(self, future: _JobFuture[Any], parsed: _Parsed) -> _JobFuture[Any]:
        """The queue is full: wait, in this thread, until the runtime took the job."""
        with self._lock:
            if self._state is not _OPEN:
                raise self._not_open()
            loop = self._loop
            assert loop is not None
            # Under the lock, so that it runs before a shutdown that begins after it.
            handoff = asyncio.run_coroutine_threadsafe(self._admit([(future, parsed)]), loop)
        try:
            handoff.result()
        except BaseException:
            handoff.cancel()
            raise
        return future

    def _not_open(self) -> Exception:
        if self._state in (_NEW, _STARTING):
            return RuntimeError(
                "the runtime is not started: use 'with SyncRuntime(...) as rt:' or rt.start()"
            )
        return RuntimeClosed("the runtime is shut down and takes no more jobs")

    # -- waiting for results -------------------------------------------------------------

    @overload
    def run(
        self,
        fn: Callable[[*Ts], Awaitable[T]],
        /,
        *args: *Ts,
        **options: Unpack[JobOptions],
    ) -> T: ...

    @overload
    def run(self, fn: Callable[[*Ts], T], /, *args: *Ts, **options: Unpack[JobOptions]) -> T: ...

    def run(self, fn: Callable[[*Ts], Any], /, *args: *Ts, **options: Unpack[JobOptions]) -> Any:
        """Submit ``fn(*args)``, block until it ends and return its result (or raise its
        exception). Interrupted (``KeyboardInterrupt``) while it waits, it cancels the job.
        ``RuntimeError`` from the runtime's own loop."""
        self._check_may_block("run()", None)
        parsed = self._parse(fn, args, options)
        # The future exists before the job is handed in, so that an interrupt that lands
        # anywhere after this line, even while the job is being handed in, cancels it.
        future = self._future_type()
        try:
            self._hand_in(parsed, future)
            return future.result()
        except BaseException:
            future._cancel_soon("the caller of run() was interrupted")
            raise

    @overload
    def map(
        self,
        fn: Callable[[A], Awaitable[T]],
        items: Iterable[A],
        /,
        *,
        window: int | None = None,
        return_exceptions: Literal[False] = False,
        **options: Unpack[JobOptions],
    ) -> Generator[T, None, None]: ...

    @overload
    def map(
        self,
        fn: Callable[[A], Awaitable[T]],
        items: Iterable[A],
        /,
        *,
        window: int | None = None,
        return_exceptions: Literal[True],
        **options: Unpack[JobOptions],
    ) -> Generator[T | BaseException, None, None]: ...

    @overload
    def map(
        self,
        fn: Callable[[A], T],
        items: Iterable[A],
        /,
        *,
        window: int | None = None,
        return_exceptions: Literal[False] = False,
        **options: Unpack[JobOptions],
    ) -> Generator[T, None, None]: ...

    @overload
    def map(
        self,
        fn: Callable[[A], T],
        items: Iterable[A],
        /,
        *,
        window: int | None = None,
        return_exceptions: Literal[True],
        **options: Unpack[JobOptions],
    ) -> Generator[T | BaseException, None, None]: ...

    def map(
        self,
        fn: Callable[[Any], Any],
        items: Iterable[Any],
        /,
        *,
        window: int | None = None,
        return_exceptions: bool = False,
        **options: Unpack[JobOptions],
    ) -> Generator[Any, None, None]:
        """Run ``fn(item)`` for every item; a generator of the results in input order.

        At most *window* jobs (default: twice the worker count) are in flight, so a huge or
        endless iterable is fine: items are read as results are taken. The first failure is
        raised and, like closing the generator early, cancels the jobs still in flight;
        with ``return_exceptions=True`` a failed or cancelled job's exception is yielded in
        its place instead. Bad input and a closed runtime raise here, at the call.
        """
        if window is None:
            window = 2 * self._workers
        check_count("window", window)
        if not callable(fn):
            raise TypeError(f"map() needs a callable, got {fn!r}")
        if not isinstance(return_exceptions, bool):
            raise TypeError(f"return_exceptions must be a bool, got {return_exceptions!r}")
        self._check_may_block("map()", None)
        # Checked once; for process jobs, each item is checked for pickling as it goes in.
        priority, opts = parse_options(
            self._runtime, fn, (), None, {"priority": _NORMAL, **options}
        )
        with self._lock:
            if self._state is not _OPEN:
                raise self._not_open()
        outcome = _outcome if return_exceptions else Future.result
        return self._map(fn, iter(items), window, priority, opts, outcome)

    def _map(
        self,
        fn: Callable[..., Any],
        items: Iterator[Any],
        window: int,
        priority: int,
        opts: Options,
        outcome: Callable[[Future[Any]], Any],
    ) -> Generator[Any, None, None]:
        in_flight: deque[Future[Any]] = deque()
        try:
            for item in items:
                if opts.kind == "process":
                    check_picklable(fn, (item,), None)
                in_flight.append(self._hand_in((fn, (item,), None, priority, opts)))
                if len(in_flight) >= window:
                    yield outcome(in_flight.popleft())
            while in_flight:
                yield outcome(in_flight.popleft())
        finally:
            for future in in_flight:
                assert isinstance(future, _JobFuture)
                future._cancel_soon("map() was closed")

    def join(self, timeout: float | None = None) -> bool:
        """Block until every job submitted so far has finished; False if *timeout* came
        first. Does not shut down. ``RuntimeError`` from the runtime's own loop."""
        self._check_may_block("join()", None)
        self._check_not_own_job("join()")
        _check_wait("join", timeout)
        if self._state in (_NEW, _STARTING):
            return True
        try:
            return self._call(self._join_in_loop, timeout)
        except RuntimeClosed:  # shut down meanwhile: every job has ended, or is ending now
            return self._stopped.wait(timeout)

    async def _join_in_loop(self, timeout: float | None) -> bool:
        self._drain_intake()
        return await self._runtime.join(timeout)

    def metrics(self) -> Metrics:
        """A frozen :class:`Metrics` snapshot, counting every job submitted before the call.

        Works before start and after shutdown too.
        """
        if get_ident() == self._loop_ident:
            self._drain_intake()
            return self._runtime.metrics()
        if self._state in (_OPEN, _CLOSING):
            try:
                return self._call(self._metrics_in_loop)
            except RuntimeClosed:
                self._stopped.wait()
        return self._runtime.metrics()

    def _metrics_in_loop(self) -> Metrics:
        self._drain_intake()
        return self._runtime.metrics()

    # -- helpers ---------------------------------------------------------------------------

    @overload
    def _call(self, fn: Callable[[*Ts], Awaitable[T]], /, *args: *Ts) -> T: ...

    @overload
    def _call(self, fn: Callable[[*Ts], T], /, *args: *Ts) -> T: ...

    def _call(self, fn: Callable[[*Ts], Any], /, *args: *Ts) -> Any:
        """Run *fn* on the loop through the portal and wait; RuntimeClosed if it is gone."""
        portal = self._portal
        if portal is None or self._state is _CLOSED:
            raise RuntimeClosed("the runtime is shut down")
        try:
            return portal.call(fn, *args)
        except anyio.RunFinishedError as exc:  # the loop has ended
            raise RuntimeClosed("the runtime is shut down") from exc
        except RuntimeError as exc:
            # The portal stops once the runtime has closed (anyio: "This portal is not
            # running"); any other RuntimeError is the called function's own.
            if self._state in (_CLOSING, _CLOSED) and "not running" in str(exc):
                raise RuntimeClosed("the runtime is shut down") from exc
            raise

    def _check_not_own_job(self, what: str) -> None:
        job = current_job()
        if job is not None and job._opts.owner is self._runtime:
            raise RuntimeError(
                f"{what} called from inside one of this runtime's jobs ({job.name!r}) would "
                "wait for that job itself; call it from outside the runtime's jobs"
            )

    def _check_may_block(self, what: str, timeout: float | None) -> None:
        if get_ident() == self._loop_ident and (timeout is None or timeout > 0):
            raise RuntimeError(_LOOP_THREAD_ERROR.format(what=what))

    @property
    def runtime(self) -> Runtime:
        """The async :class:`Runtime` inside; use it only from code running on its loop."""
        return self._runtime

    @property
    def loop(self) -> str:
        """Which event loop runs the runtime: ``"uvloop"`` or ``"asyncio"``."""
        return "uvloop" if self._use_uvloop else "asyncio"

    def __repr__(self) -> str:
        return f"<SyncRuntime state={self._state} loop={self.loop} runtime={self._runtime!r}>"


def _mark_asyncio_thread() -> None:
    """Tell anyio, through sniffio when it is installed, that this thread runs asyncio.

    The intake is drained in a plain callback on the loop, outside any task, and handing it
    a job may start a worker (anyio's ``start_soon``), which asks sniffio what runs here:
    sniffio finds asyncio only from inside a task, or from this per-thread name, which its
    documentation offers to threads that run an event loop. Without sniffio, anyio finds the
    running loop itself.
    """
    try:
        import sniffio
    except ImportError:
        return
    sniffio.thread_local.name = "asyncio"


def _outcome(future: Future[T]) -> T | BaseException:
    error = future.exception()
    return future.result() if error is None else error


def _check_wait(what: str, timeout: float | None) -> None:
    if timeout is not None:
        check_seconds(f"{what}(timeout=...)", timeout, allow_zero=True)
