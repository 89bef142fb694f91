"""How a unit runs: natively on the loop, in a worker thread, or in a worker process.

Coroutine units are awaited inline by the runtime's workers (see ``_runtime``); this module
holds the two hops off the loop (threads: the runtime's own pool, ``_threads``; processes:
anyio's) and the checks made at submit time for them.
"""

from __future__ import annotations

import functools
import inspect
import logging
import reprlib
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import anyio

from ._exceptions import JobCancelled, WorkerCrashed
from ._units import Job, Kind, _current_job

__all__ = [
    "JobRaised",
    "check_picklable",
    "default_kind",
    "is_coroutine_callable",
    "keep_alive_while",
    "run_in_process",
    "run_in_thread",
]

if TYPE_CHECKING:
    from anyio import CapacityLimiter

    from ._threads import WorkerThreads

logger = logging.getLogger("asyncworkers")

KINDS: frozenset[str] = frozenset(("async", "thread", "process"))


def default_kind(fn: Callable[..., Any]) -> Kind:
    """``"async"`` for coroutine functions, ``"thread"`` for every other callable.

    Coroutine functions are found through partials and in instances whose ``__call__`` is
    ``async def``. Nothing is cached: a cache keyed by the callable would keep it, and all
    it captures, alive after its jobs are gone.
    """
    return "async" if is_coroutine_callable(fn) else "thread"


def is_coroutine_callable(fn: object) -> bool:
    """True when calling *fn* makes a coroutine, as far as can be told without calling it."""
    try:  # the common case, a function or bound method: its code object says at once
        if fn.__code__.co_flags & inspect.CO_COROUTINE:  # type: ignore[attr-defined]
            return True
    except AttributeError:
        pass
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    if inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isclass(fn):
        return False
    # An instance with an ``async def __call__``.
    return inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


class JobRaised(Exception):
    """Carries a ``BaseException`` that a thread or process job raised back to its worker.

    Bare, a ``SystemExit`` or ``GeneratorExit`` from another thread or process would look
    like the worker's own exit or cancellation; wrapped, it becomes the job's failure (as
    with ``ThreadPoolExecutor``). The runtime unwraps it: the job's exception is ``error``.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


def check_picklable(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any] | None
) -> None:
    """Raise TypeError naming the first thing a process job could not send to its worker.

    Checked at submit time, so that the error comes from the call that made it. A coroutine
    function is refused too: the worker process would get a coroutine it cannot run.
    """
    if default_kind(fn) == "async":
        raise TypeError(
            f'kind="process" runs plain functions in a worker process; {fn!r} is a '
            'coroutine function (run it with kind="async", the default)'
        )
    _dumps(fn, f"the function {fn!r}")
    for index, arg in enumerate(args):
        _dumps(arg, f"positional argument {index} ({reprlib.repr(arg)})")
    for key, value in (kwargs or {}).items():
        _dumps(value, f"keyword argument {key!r} ({reprlib.repr(value)})")


def _dumps(obj: object, what: str) -> None:
    import pickle  # here: only process jobs pickle, and it is not a light import

    try:
        pickle.dumps(obj)
    except Exception as exc:
        raise TypeError(
            f'kind="process" needs everything it sends to be picklable, and {what} is not: {exc}'
        ) from exc


class _Held(anyio.CapacityLimiter):
    """The limiter handed to ``anyio.to_process.run_sync`` for a job that holds its token.

    A process job takes its token from the runtime's own ``CapacityLimiter`` before the hop
    (see :func:`run_in_process`), so the ``async with limiter`` that anyio wraps around the
    call has nothing left to do: this one enters and exits at once.
    """

    __slots__ = ()

    def __new__(cls) -> _Held:
        return object.__new__(cls)

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        return None


_HELD: Final = _Held()


def _run_in_thread(job: Job[Any]) -> Any:
    """What a worker thread runs for a thread job, in a copy of its worker's context."""
    if job._stop is not None:  # stopped on its way to the thread
        raise job._stop
    # Name the job itself in this context, so that current_job() stays this job even if
    # the worker moves on (an abandoned thread).
    _current_job.set(job)
    try:
        if job.kwargs:
            return job.fn(*job.args, **job.kwargs)
        return job.fn(*job.args)
    except StopIteration as exc:  # a future refuses it: it would end a generator instead
        raise JobRaised(exc) from None
    except Exception:
        raise
    except BaseException as exc:
        raise JobRaised(exc) from None


def keep_alive_while(threads: Iterable[threading.Thread]) -> None:
    """Keep the interpreter alive until *threads*, each running an abandoned job, have ended.

    The runtime's worker threads are daemon threads, and the interpreter does not wait for
    those at exit: a job left running in one would be cut off mid-way. A non-daemon thread
    joining each of them makes the interpreter wait, as ``ThreadPoolExecutor`` does for
    its threads. (A pool thread ends after its job: the runtime has closed its pool.)
    """
    for thread in threads:
        if thread.daemon:
            threading.Thread(
                target=thread.join, name=f"asyncworkers-wait-{thread.name}", daemon=False
            ).start()


async def run_in_thread(job: Job[Any], limiter: CapacityLimiter, threads: WorkerThreads) -> Any:
    """Run a plain function in one of *threads*; the job's context (current_job) goes along.

    The job borrows a token of *limiter* (the runtime's ``threads=``) for as long as its
    function runs. When none is free it waits, FIFO, under a cancel scope that is the job's
    hook, so that cancelling it (or its timeout) takes it out of the line at once: a job
    that waited for a thread and was cancelled never starts.

    Threads cannot be interrupted, so a running job stops cooperatively, at its next
    ``check_cancelled()``. If the awaiting worker itself is cancelled (the last phase of
    shutdown), the thread is abandoned rather than waited for: a thread that never checks
    cannot hang the runtime.
    """
    try:
        limiter.acquire_on_behalf_of_nowait(job)
    except anyio.WouldBlock:
        await _wait_for_thread(job, limiter)
    try:
        return await threads.run(_run_in_thread, job)
    except Exception:
        raise  # the job's own outcome
    except BaseException:  # the worker is cancelled; the thread goes on alone
        if job.finished_at is None:  # by a scope outside the runtime: say so here
            logger.warning(
                "asyncworkers: abandoning thread job %s (id %d): its worker was cancelled "
                "while the thread ran (a thread stops only at check_cancelled())",
                job.name,
                job.id,
            )
        raise
    finally:
        limiter.release_on_behalf_of(job)


async def _wait_for_thread(job: Job[Any], limiter: CapacityLimiter) -> None:
    acquired = False
    with anyio.CancelScope() as scope:
        job._set_hook(scope)
        try:
            await limiter.acquire_on_behalf_of(job)
            acquired = True
        finally:
            job._set_hook(None)
    if not acquired:  # the scope was cancelled by a stop request, which says why
        raise job._stop or JobCancelled("cancelled while waiting for a thread")


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any] | None) -> Any:
    """What runs in the worker process: the call, with the child's traceback kept as a note
    on the exception, since the traceback itself does not survive pickling."""
    try:
        return fn(*args, **kwargs) if kwargs else fn(*args)
    except Exception as exc:
        exc.add_note(
            "".join(["\nTraceback in the worker process:\n", *traceback.format_exception(exc)])
        )
        raise
    except BaseException as exc:  # SystemExit would end the worker process, and the parent
        raise JobRaised(exc) from None


async def run_in_process(job: Job[Any], limiter: CapacityLimiter) -> Any:
    """Run a function in a worker process; cancelling the awaiting scope kills the process.

    A process that dies under the job (``os._exit()``, a signal, out of memory) fails only
    this job, with :class:`WorkerCrashed`; anyio drops it from its pool and starts a fresh
    one for the next job.

    anyio leaves a worker process behind when the call is cancelled while that process
    starts (it neither kills it nor adds it to its pool). So the job first takes its token
    of *limiter*, then makes sure an idle worker is waiting, starting one under a shield if
    need be; the call itself then only takes that worker, with nothing left to start.
    """
    # Imported here: anyio's process pool (and pickle, subprocess) load with the first process
    # job, not with every runtime.
    import anyio.to_process
    from anyio import BrokenWorkerProcess

    async with limiter:
        await _ensure_idle_worker()
        try:
            return await anyio.to_process.run_sync(
                _call, job.fn, job.args, job.kwargs, cancellable=True, limiter=_HELD
            )
        except BrokenWorkerProcess as exc:
            raise WorkerCrashed(
                f"the worker process running job {job.name!r} died (os._exit(), a signal or "
                "out of memory); the next job gets a new process"
            ) from exc


def _noop() -> None:
    return None


async def _ensure_idle_worker() -> None:
    """Start a worker process, shielded from cancellation, unless an idle one is waiting.

    Shielded, a start always ends with the process in anyio's pool, where it is reused and
    killed when the event loop ends. Between this and the job's own call nothing awaits, so
    no other job can take the idle worker first.
    """
    import anyio.to_process

    if _idle_worker_waiting():
        return
    with anyio.CancelScope(shield=True):
        await anyio.to_process.run_sync(_noop, limiter=_HELD)


def _idle_worker_waiting() -> bool:
    # anyio keeps its pool in a private RunVar; tests/test_processes.py fails loudly if an
    # upgrade moves it (then every process job would start with the shielded round trip).
    import anyio.to_process

    idle_var = getattr(anyio.to_process, "_process_pool_idle_workers", None)
    idle = idle_var.get(None) if idle_var is not None else None
    return any(process.returncode is None for process, _ in idle or ())
