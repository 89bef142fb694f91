"""The Manager: claims jobs from a store, runs them on a Runtime, writes the outcomes back.

One Manager is one worker in the store's sense (``worker`` column, lease holder). Its parts:

- the claim loop asks each worker group (a set of queues with a concurrency) for as many jobs
  as it has free slots, and sleeps on ``store.wait_for_work`` or a freed slot otherwise;
- one task per held job runs it on the Runtime (public API only) and writes its outcome with
  the claim's fencing token: success, failure with a retry time from the task's policy, dead;
- a heartbeat *thread* renews the leases through ``store.sync_heartbeat()``, so that a job
  that blocks the event loop does not lose its lease; the ids it reports lost are cancelled;
- a sweeper puts back the jobs of workers that died (``store.requeue_expired``) every poll
  interval, so nobody has to run a cron for it.

Stopping (``stop()``, or SIGTERM/SIGINT with ``handle_signals``): no new claims, the held
jobs get ``shutdown_grace`` seconds to finish, then the rest are cancelled and released to
the queue without counting an attempt. A second ``stop(grace=0)`` (or a second signal) skips
what is left of the grace.

A store error that waiting cannot fix (a non-transient ``StoreUnavailable``: the SQLite file
deleted under the worker, a database that is gone) stops the Manager at once; leaving
``async with`` then raises it, so that a worker exits with the reason rather than retry
forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import signal
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

import asyncworkers as aw

from ..ops._tracing import TRACE_KEY, JobTracer, job_tracer
from . import _deadlock
from ._errors import JobWouldDeadlock, StoreUnavailable
from ._fields import check_lease, check_text
from ._heartbeat import ClockWatch, LeaseKeeper
from ._jobs import encode_result
from ._protocol import DEFAULT_LEASE, MAX_PAYLOAD_BYTES, Claimed, JobRecord, Store
from ._tasks import TaskRegistry, TaskSpec
from ._upkeep import check_retention, upkeep_loops

if TYPE_CHECKING:
    from ..ops import Options
    from ..ops._server import Ops

__all__ = ["Manager", "ManagerMetrics"]

log = logging.getLogger("asyncworkers.store")

# How many claim durations the latency percentiles cover (a bounded window: flat memory).
_LATENCY_WINDOW = 1000
# How long, after the grace, the Manager waits for cancelled jobs to say so before it
# releases their rows anyway (a thread job that never checks for cancellation).
_CANCEL_WAIT = 5.0
# Longest error text kept in a row.
_MAX_ERROR = 2000
# Seconds the wall clock may run ahead of the monotonic one between two sweeps before the
# sweeper takes it for a jump (NTP slews far slower than this).
_CLOCK_JUMP = 1.0
# Longest wait between two tries of a claim or a write while the database is away.
_MAX_BACKOFF = 10.0


@dataclass(frozen=True, slots=True)
class ManagerMetrics:
    """A snapshot of a Manager's counters (``Manager.metrics()``).

    Every counter counts what the store *recorded*: an outcome is counted once its write was
    accepted, never before. ``failed`` counts failed attempts the store took; each ends
    ``retried`` or ``dead``. ``rejected`` rows could never run (unknown task, malformed or
    oversized arguments) and went to the dead letters, counted in ``dead`` as well.
    ``lease_losses`` counts claims that were lost: the heartbeat found the claim gone, or the
    store refused (or never took) a write about it (a fenced late write, an outage longer
    than the lease, a full disk). Each lost claim is counted there once and nowhere else.
    ``claim_latency`` times claim queries. ``outcomes`` splits the outcomes by
    ``(task, queue, outcome)``, outcome one of ``succeeded``, ``retried``, ``dead`` and
    ``released`` (a row of a task this worker does not know counts under ``<unknown>``).
    """

    claimed: int
    succeeded: int
    failed: int
    retried: int
    dead: int
    rejected: int
    released: int
    lease_losses: int
    running: int
    claim_latency: aw.Latency
    outcomes: Mapping[tuple[str, str, str], int] = field(default_factory=dict)


class _Group:
    """A worker group: the queues it serves (None: all) and how many jobs it may hold."""

    __slots__ = ("capacity", "held", "name", "paused", "queues")

    def __init__(self, name: str, queues: list[str] | None, capacity: int) -> None:
        self.name = name
        self.queues = queues
        self.capacity = capacity
        self.held = 0
        self.paused = False

    def free(self) -> int:
        return 0 if self.paused else self.capacity - self.held


class _Held:
    """One job this Manager holds a claim on."""

    __slots__ = ("claimed", "group", "job", "lost", "releasing", "writing")

    def __init__(self, claimed: Claimed, group: _Group) -> None:
        self.claimed = claimed
        self.group = group
        self.job: aw.Job[Any] | None = None
        self.lost = False  # the heartbeat said another worker may have it now
        self.releasing = False  # cancelled by shutdown: release, do not count the attempt
        self.writing = False  # its outcome is being written: the write's answer decides


class Manager:
    """Feeds a Runtime from a durable store.

    ::

        async with aw.store.SQLiteStore("jobs.db") as store:
            async with aw.store.Manager(store, tasks, concurrency=10) as manager:
                await manager.wait_stopped()    # until manager.stop() (or a signal)

    :param store: any :class:`~asyncworkers.store.Store` (opened by the Manager if needed)
    :param tasks: the :class:`TaskRegistry` of the tasks this worker runs
    :param concurrency: jobs held at once, over every queue (an int), or per queue
        (``{"emails": 5, "reports": 1}``: one worker group per queue)
    :param queues: with an int *concurrency*, the queues to take jobs from (None: all)
    :param lease: seconds a claim lasts without a heartbeat; renewed every ``lease / 3``
    :param poll_interval: longest sleep between two looks for due jobs and expired leases
    :param shutdown_grace: seconds held jobs get to finish when the Manager stops
    :param runtime: a running :class:`~asyncworkers.Runtime` to use (None: its own, sized
        to the concurrency)
    :param handle_signals: the first SIGTERM/SIGINT stops gracefully, the second at once
    :param worker: this worker's name in the store (default ``host:pid``)
    :param http: ``"HOST:PORT"`` to serve ``/healthz``, ``/readyz``, ``/metrics`` and the
        dashboard on while the Manager runs (see :func:`asyncworkers.ops.serve`)
    :param ops: :class:`asyncworkers.ops.Options` for that endpoint and the stuck-job
        watchdog (an ``ops`` without ``http`` runs the watchdog alone)
    :param periodic: enqueue the due runs of the registry's periodic tasks (each run once,
        whatever the number of workers); False leaves that to other workers
    :param retention: delete the jobs that ended (succeeded, dead, cancelled) more than
        this many seconds ago (or a ``timedelta``), in batches, now and then; None keeps them
    """

    def __init__(
        self,
        store: Store,
        tasks: TaskRegistry,
        *,
        concurrency: int | Mapping[str, int] = 10,
        queues: Sequence[str] | None = None,
        lease: float = DEFAULT_LEASE,
        poll_interval: float = 1.0,
        shutdown_grace: float = 30.0,
        runtime: aw.Runtime | None = None,
        handle_signals: bool = False,
        worker: str | None = None,
        http: str | None = None,
        ops: Options | None = None,
        periodic: bool = True,
        retention: float | timedelta | None = None,
    ) -> None:
        if not isinstance(tasks, TaskRegistry):
            raise TypeError(f"tasks must be an aw.store.TaskRegistry, got {tasks!r}")
        self._groups = _groups(concurrency, queues)
        _check_seconds("lease", lease)
        check_lease(lease)  # what the store's claim takes: refused here, not at each claim
        _check_seconds("poll_interval", poll_interval)
        _check_seconds("shutdown_grace", shutdown_grace, allow_zero=True)
        if runtime is not None and not isinstance(runtime, aw.Runtime):
            raise TypeError(f"runtime must be an aw.Runtime or None, got {runtime!r}")
        self._store = store
        self._tasks = tasks
        self._lease = float(lease)
        self._poll = float(poll_interval)
        self._grace = float(shutdown_grace)
        self._given_runtime = runtime
        self._handle_signals = handle_signals
        # checked here: a name the store refuses would fail every claim, for ever
        self.worker = check_text("worker", worker or f"{socket.gethostname()}:{os.getpid()}")
        from ..ops import Options, parse_address  # light: no aiohttp, no prometheus_client

        self._http = None if http is None else parse_address(http)
        if ops is not None and not isinstance(ops, Options):
            raise TypeError(f"ops must be an aw.ops.Options or None, got {ops!r}")
        self._ops_options = ops
        self._ops: Ops | None = None
        self._store_error: str | None = None  # the database is away: why (claims, sweeps)
        self._write_error: str | None = None  # an outcome cannot be written: why
        self._tracer: JobTracer | None = None  # set at the start when tracing is on
        self._upkeep = upkeep_loops(
            store, tasks, periodic=bool(periodic), retention=check_retention(retention)
        )

        self._held: dict[int, _Held] = {}
        self._counts = dict.fromkeys(
            ("claimed", "succeeded", "failed", "retried", "dead", "rejected", "released"), 0
        )
        self._lease_losses = 0
        self._outcomes: Counter[tuple[str, str, str]] = Counter()
        self._claim_times: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        self._claim_max = 0.0
        self._claim_count = 0
        self._claim_errors = 0  # claims failed in a row (the database is away)

        self._started = False
        self._stopping = False
        self._hurry = False
        self._runtime: aw.Runtime | None = None
        self._tg: TaskGroup | None = None
        self._handoff: asyncio.Queue[_Held] = asyncio.Queue()  # claimed, for the runners
        self._idle_runners = 0  # runners waiting on _handoff
        self._wake: anyio.Event | None = None  # a slot was freed, or resume()/stop()
        self._emptied: anyio.Event | None = None  # set when nothing is held any more
        self._stopped: anyio.Event | None = None
        self._stop_asked: anyio.Event | None = None
        self._claim_scope: anyio.CancelScope | None = None
        self._claim_done: anyio.Event | None = None  # the claim loop has ended
        self._grace_scope: anyio.CancelScope | None = None
        self._keeper: LeaseKeeper | None = None
        self._fatal: StoreUnavailable | None = None  # a store error that stopped us
        self._waiting: set[int] = set()  # held jobs waiting in store.result() (_deadlock)

    def __repr__(self) -> str:
        state = "stopping" if self._stopping else "running" if self._started else "new"
        return f"<Manager worker={self.worker!r} {state} held={len(self._held)}>"

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Manager:
        if self._started:
            raise RuntimeError(f"{self!r} can be started only once")
        self._started = True
        if self._handle_signals and threading.current_thread() is not threading.main_thread():
            raise RuntimeError("handle_signals=True needs the event loop of the main thread")
        await self._store.open()
        beat = self._store.sync_heartbeat()  # before anything runs: it may fail
        self._wake = anyio.Event()
        self._stopped = anyio.Event()
        self._stop_asked = anyio.Event()
        self._claim_scope = anyio.CancelScope()
        self._claim_done = anyio.Event()
        if self._stopping:  # stop() came before the start
            self._stop_asked.set()
        if self._given_runtime is None:
            total = sum(group.capacity for group in self._groups)
            self._runtime = aw.Runtime(workers=total, threads=total)
            await self._runtime.__aenter__()
        else:
            self._runtime = self._given_runtime
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._claim_loop)
        self._tg.start_soon(self._sweep_loop)
        for loop in self._upkeep:  # periodic tasks, retention (_upkeep)
            self._tg.start_soon(loop)
        if self._handle_signals:  # started: its handlers are in place when we return
            await self._tg.start(self._signal_loop)
        self._keeper = LeaseKeeper(beat, self._lease, self._lost, self.worker)
        self._keeper.start()
        _deadlock.register(self)
        self._tracer = job_tracer()  # None (and no cost per job) without OpenTelemetry
        if self._http is not None or self._ops_options is not None:
            await self._start_ops()
        return self

    async def _start_ops(self) -> None:
        from ..ops import Options
        from ..ops._server import Ops

        self._ops = Ops(self, self._http, self._ops_options or Options())
        try:
            await self._ops.__aenter__()
        except BaseException as exc:  # a port in use: undo the start, then say so
            self._ops = None
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:  # the body failed: do not wait out the grace
            self._hurry = True
        _deadlock.unregister(self)
        try:
            with anyio.CancelScope(shield=True):
                await self._shutdown()
        finally:
            if self._ops is not None:  # served through the drain: /readyz said so
                await self._ops.__aexit__(None, None, None)  # shields what must finish
            assert self._tg is not None
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
            if self._keeper is not None:
                self._keeper.stop()
            if self._given_runtime is None and self._runtime is not None:
                await self._runtime.__aexit__(None, None, None)
            assert self._stopped is not None
            self._stopped.set()
        if self._fatal is not None and exc is None:
            raise self._fatal

    async def run(self) -> None:
        """Run until :meth:`stop` is called (or a signal arrives, with ``handle_signals``)."""
        async with self:
            await self.wait_stopping()

    async def wait_stopping(self) -> None:
        """Wait until a stop has been asked for."""
        if self._stop_asked is None:
            raise RuntimeError(f"{self!r} is not running: use `async with manager:`")
        await self._stop_asked.wait()

    def stop(self, grace: float | None = None) -> None:
        """Stop claiming and start the shutdown; *grace* 0 skips the rest of the drain.

        Leaving ``async with`` (or ``run()`` returning) completes it.
        """
        if grace is not None and grace <= 0:
            self._hurry = True
            if self._grace_scope is not None:
                self._grace_scope.cancel()
        if grace is not None and grace > 0 and not self._stopping:
            self._grace = float(grace)
        self._stopping = True
        if self._stop_asked is not None:
            self._stop_asked.set()
        if self._claim_scope is not None:  # a claim under way still lands (it is shielded)
            self._claim_scope.cancel()
        self._poke()

    def pause(self, queue: str | None = None) -> None:
        """Stop claiming, for every group or the one serving *queue*; held jobs go on."""
        for group in self._select(queue):
            group.paused = True

    def resume(self, queue: str | None = None) -> None:
        """Claim again (after :meth:`pause`)."""
        for group in self._select(queue):
            group.paused = False
        self._poke()

    @property
    def paused(self) -> bool:
        """True when every group is paused."""
        return all(group.paused for group in self._groups)

    def held(self) -> int:
        """How many jobs this Manager holds a claim on right now."""
        return len(self._held)

    def held_jobs(self) -> list[tuple[Claimed, aw.Job[Any] | None]]:
        """The claims held now, each with its job on the runtime (None until submitted)."""
        return [(held.claimed, held.job) for held in self._held.values()]

    @property
    def store(self) -> Store:
        """The store this Manager works for."""
        return self._store

    @property
    def runtime(self) -> aw.Runtime | None:
        """The Runtime the jobs run on (None before the start)."""
        return self._runtime

    @property
    def stopping(self) -> bool:
        """True once a stop was asked for (draining, then stopped)."""
        return self._stopping

    @property
    def store_error(self) -> str | None:
        """While the database is away (or its disk full), the last error of a claim, a sweep
        or an outcome's write; else None."""
        return self._store_error or self._write_error

    @property
    def ops(self) -> Ops | None:
        """The operations endpoint and watchdog (``http=`` / ``ops=``), while running."""
        return self._ops

    def metrics(self) -> ManagerMetrics:
        """A snapshot of the counters."""
        return ManagerMetrics(
            **self._counts,
            lease_losses=self._lease_losses,
            running=len(self._held),
            claim_latency=self._claim_latency(),
            outcomes=dict(self._outcomes),
        )

    def _select(self, queue: str | None) -> list[_Group]:
        if queue is None:
            return list(self._groups)
        chosen = [g for g in self._groups if g.queues is None or queue in g.queues]
        if not chosen:
            raise ValueError(f"no worker group serves queue {queue!r}")
        return chosen

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _next_wake(self) -> None:
        assert self._wake is not None
        await self._wake.wait()
        self._wake = anyio.Event()

    # -- claiming ------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        assert self._claim_scope is not None
        assert self._claim_done is not None
        try:
            with self._claim_scope:
                await self._claim_until_stopped()
        finally:
            self._claim_done.set()

    async def _claim_until_stopped(self) -> None:
        while not self._stopping:
            free = [group for group in self._groups if group.free() > 0]
            if not free:
                await self._next_wake()
                continue
            more = False
            for group in free:
                more |= await self._claim_for(group)
                if self._stopping:
                    return
            if not more:
                await self._idle()

    async def _claim_for(self, group: _Group) -> bool:
        """Claim up to the group's free slots; True when it got all it asked for."""
        want = group.free()
        started = time.monotonic()
        try:
            with anyio.CancelScope(shield=True):  # claimed rows must reach _held
                claimed = await self._store.claim(group.queues, want, self._lease, self.worker)
        except Exception as exc:  # the database is away: wait and try again, never crash
            self._store_error = _one_line(exc)
            if self._stop_on_fatal(exc):
                return False
            self._claim_errors += 1
            pause = min(self._poll * 2**self._claim_errors, _MAX_BACKOFF)
            log.error("claim failed (%s); trying again in %.1f s", _one_line(exc), pause)
            await anyio.sleep(pause)
            return False
        self._claim_errors = 0
        self._store_error = None
        self._record_claim(time.monotonic() - started)
        for item in claimed:
            self._take(item, group)
        return len(claimed) == want

    async def _idle(self) -> None:
        """Sleep until the store may have work, a slot frees up, or the Manager stops."""
        async with anyio.create_task_group() as tg:

            async def store_side() -> None:
                try:
                    await self._store.wait_for_work(self._poll)
                except Exception as exc:  # the claim that follows says more, or stops us
                    if not self._stop_on_fatal(exc):
                        log.warning("waiting for work failed: %s", _one_line(exc))
                        await anyio.sleep(self._poll)
                tg.cancel_scope.cancel()

            async def our_side() -> None:
                await self._next_wake()
                tg.cancel_scope.cancel()

            tg.start_soon(store_side)
            tg.start_soon(our_side)

    def _take(self, claimed: Claimed, group: _Group) -> None:
        held = _Held(claimed, group)
        self._held[claimed.id] = held
        assert self._keeper is not None
        self._keeper.hold(claimed.id, claimed.token)
        group.held += 1
        self._counts["claimed"] += 1
        # To a runner (a task that runs held jobs one after the other): spawning a task
        # per job cost a third of a trivial job's CPU here. Runners are started as jobs
        # outnumber the idle ones, so there are never more than jobs held at once.
        self._handoff.put_nowait(held)
        if self._handoff.qsize() > self._idle_runners:
            assert self._tg is not None
            self._tg.start_soon(self._runner, name="asyncworkers-manager-runner")

    async def _runner(self) -> None:
        """Run held jobs as they are handed over, until the Manager's task group ends."""
        handoff = self._handoff
        while True:
            self._idle_runners += 1
            try:
                held = await handoff.get()
            finally:
                self._idle_runners -= 1
            await self._run_one(held)

    def _record_claim(self, seconds: float) -> None:
        self._claim_times.append(seconds)
        self._claim_max = max(self._claim_max, seconds)
        self._claim_count += 1

    def _claim_latency(self) -> aw.Latency:
        ordered = sorted(self._claim_times)
        if not ordered:
            return aw.Latency()

        def rank(q: float) -> float:
            return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

        return aw.Latency(
            p50=rank(0.5), p90=rank(0.9), p99=rank(0.99), max=self._claim_max,
            count=self._claim_count,
        )  # fmt: skip

    # -- running one job -----------------------------------------------------------------

    async def _run_one(self, held: _Held) -> None:
        span: Any = None
        try:
            checked = self._check(held.claimed)
            if isinstance(checked, str):
                await self._reject(held, checked)
                return
            spec, args = checked
            carried = args.pop(TRACE_KEY, None)  # the producer's trace (ops tracing)
            if self._tracer is not None:
                span = self._tracer.start(held.claimed, carried)
            job = self._submit(held, spec, args, span)
            if job is None:  # the runtime refused it (shutting down): back to the queue
                await self._release(held)
                return
            await job.wait()
            await self._settle(held, spec, job)
        finally:
            self._forget(held)
            if span is not None:
                assert self._tracer is not None
                self._tracer.end(span, held.job)

    def _check(self, claimed: Claimed) -> tuple[TaskSpec, dict[str, Any]] | str:
        """The task and arguments of a claimed row, or why the row can never run."""
        spec = self._tasks.get(claimed.task)
        if spec is None:
            return f"unknown task {claimed.task!r}: this worker has no such task"
        text = claimed.args_json
        # Measured before parsing: a huge row must not cost its parse. (len * 4 bounds the
        # UTF-8 size, so most rows skip the encode.)
        if len(text) * 4 > MAX_PAYLOAD_BYTES and len(text.encode()) > MAX_PAYLOAD_BYTES:
            size = len(text.encode())
            return f"arguments are {size} bytes, over the {MAX_PAYLOAD_BYTES} limit"
        try:
            args = json.loads(text)
        except ValueError as exc:
            return f"arguments are not valid JSON: {exc}"
        if not isinstance(args, dict):
            return f"arguments are not a JSON object: {type(args).__name__}"
        try:
            spec.check_args({k: v for k, v in args.items() if k != TRACE_KEY})
        except TypeError as exc:
            return str(exc)
        return spec, args

    def _submit(
        self, held: _Held, spec: TaskSpec, args: dict[str, Any], span: Any = None
    ) -> aw.Job[Any] | None:
        assert self._runtime is not None
        claimed = held.claimed
        call = spec.call
        if span is not None and spec.kind != "process":  # the span is current in the job
            assert self._tracer is not None
            call = self._tracer.wrap(call, span)
        unit: aw.WorkUnit[Any] = aw.WorkUnit(
            call,
            kwargs=args,
            priority=claimed.priority,
            name=f"{claimed.task}#{claimed.id}",
            timeout=spec.timeout,
            kind=spec.kind,
        )
        try:
            held.job = self._runtime.enqueue(unit)
        except aw.RuntimeClosed:
            return None
        if held.lost or held.releasing:  # the heartbeat or shutdown came first
            held.job.cancel("lease lost" if held.lost else "the worker is stopping")
        return held.job

    async def _settle(self, held: _Held, spec: TaskSpec, job: aw.Job[Any]) -> None:
        if held.lost or self._held.get(held.claimed.id) is not held:
            return  # another worker may run it now, or shutdown released it: write nothing
        if held.releasing and job.state is not aw.JobState.COMPLETED:
            await self._release(held)
            return
        error = job.exception()
        if error is None:
            try:
                text = encode_result(job.result(), task=spec.name)
            except TypeError as exc:  # retrying returns the same kind of value: dead now
                await self._write_failure(held, spec, exc, retry=False)
                return
            if await self._write(
                held, lambda: self._store.complete(held.claimed.id, held.claimed.token, text)
            ):
                self._count(held, "succeeded")
            return
        await self._write_failure(held, spec, error, retry=True)

    async def _write_failure(
        self, held: _Held, spec: TaskSpec, error: BaseException, *, retry: bool
    ) -> None:
        claimed = held.claimed
        again = (
            retry
            and claimed.attempt < claimed.max_attempts
            and not isinstance(error, aw.JobCancelled | JobWouldDeadlock)  # never better later
            and isinstance(error, spec.retry.retry_on)
        )
        retry_at = time.time() + spec.retry.delay(claimed.attempt) if again else None
        text = _error_text(error, claimed.attempt, claimed.max_attempts)
        if not again:
            log.warning("job %s (%s) is dead: %s", claimed.id, claimed.task, text)
        ok = await self._write(
            held, lambda: self._store.fail(claimed.id, claimed.token, text, retry_at)
        )
        if ok:
            self._counts["failed"] += 1
            self._count(held, "retried" if again else "dead")

    async def _reject(self, held: _Held, reason: str) -> None:
        claimed = held.claimed
        log.warning("job %s (%s) rejected, never run: %s", claimed.id, claimed.task, reason)
        text = f"rejected, never run: {reason}"[:_MAX_ERROR]
        if await self._write(held, lambda: self._store.fail(claimed.id, claimed.token, text, None)):
            self._counts["rejected"] += 1
            self._count(held, "dead")

    async def _release(self, held: _Held) -> None:
        if await self._write(
            held, lambda: self._store.release(held.claimed.id, held.claimed.token)
        ):
            self._count(held, "released")

    async def _write(self, held: _Held, write: Callable[[], Awaitable[bool]]) -> bool:
        """One fenced write, shielded (a half-known outcome helps nobody), tried again while
        the database is away for up to a lease; False and a lease loss counted when the
        store refused it (or never answered: the job will run again elsewhere).

        While it is under way the heartbeat's verdicts on this claim are ignored: a beat
        that read the claim just after this write ended it would call it lost (see _lost).
        """
        deadline = time.monotonic() + self._lease
        pause = 0.05
        ok = False
        held.writing = True
        with anyio.CancelScope(shield=True):
            while True:
                try:
                    ok = await write()
                    self._write_error = None
                    break
                except Exception as exc:
                    self._write_error = _one_line(exc)
                    if self._stop_on_fatal(exc) or time.monotonic() + pause > deadline:
                        log.error("job %s: giving up its write: %s", held.claimed.id,
                                  _one_line(exc))  # fmt: skip
                        break
                    log.warning("job %s: write failed (%s), trying again", held.claimed.id,
                                _one_line(exc))  # fmt: skip
                    await anyio.sleep(pause)
                    pause = min(pause * 2, _MAX_BACKOFF)
        held.writing = False
        if not ok:
            log.warning(
                "job %s: write refused, its claim was lost (%s)", held.claimed.id, _where(held)
            )
            self._count_loss(held)
        return ok

    def _count(self, held: _Held, outcome: str) -> None:
        """One outcome the store recorded, in the totals and by task and queue."""
        self._counts[outcome] += 1
        claimed = held.claimed
        task = claimed.task if claimed.task in self._tasks else "<unknown>"
        self._outcomes[(task, claimed.queue, outcome)] += 1

    def _count_loss(self, held: _Held) -> None:
        """The claim is lost: count it once, whoever (heartbeat or refused write) says so."""
        if not held.lost:
            held.lost = True
            self._lease_losses += 1

    def _forget(self, held: _Held) -> None:
        job_id = held.claimed.id
        if self._held.get(job_id) is held:
            del self._held[job_id]
            assert self._keeper is not None
            self._keeper.drop(job_id)
            held.group.held -= 1
        if not self._held and self._emptied is not None:
            self._emptied.set()
        self._poke()

    # -- a job waiting for another (_deadlock) --------------------------------------------

    def _start_waiting(self, job: aw.Job[Any], store: Any) -> Callable[[JobRecord], None] | None:
        """*job* calls ``store.result()``: if it is one of ours on our store, mark it
        waiting and return the check of what it waits for."""
        if store is not self._store:
            return None
        held = next((h for h in self._held.values() if h.job is job), None)
        if held is None:
            return None
        self._waiting.add(held.claimed.id)
        return lambda record: self._check_wait(held, record)

    def _stop_waiting(self, job: aw.Job[Any]) -> None:
        for held in self._held.values():
            if held.job is job:
                self._waiting.discard(held.claimed.id)

    def _check_wait(self, held: _Held, record: JobRecord) -> None:
        """Raise JobWouldDeadlock when *record* waits for a slot of ours that only jobs
        waiting like *held* hold (and no group of ours has room for it)."""
        if record.state != "queued":
            return  # running somewhere, or about to end: it will
        groups = [g for g in self._groups if g.queues is None or record.queue in g.queues]
        if not groups:
            return  # another worker serves its queue
        for group in groups:
            waiters = sum(
                1 for h in self._held.values() if h.group is group and h.claimed.id in self._waiting
            )
            if waiters < group.capacity:
                return  # a slot is, or will be, free for it
        raise JobWouldDeadlock(
            f"job {held.claimed.id} ({held.claimed.task}) waits for job {record.id} "
            f"({record.task}, queue {record.queue!r}), which worker {self.worker} can never "
            "run: each of its slots for that queue is held by a job waiting like this one "
            "(enqueue the follow-up instead of awaiting it in a job, or raise the concurrency)"
        )

    # -- leases --------------------------------------------------------------------------

    def _lost(self, claims: set[tuple[int, int]]) -> None:
        """Runs on the loop: the heartbeat says these claims are no longer ours."""
        for job_id, token in claims:
            held = self._held.get(job_id)
            if held is None or held.lost or held.claimed.token != token:
                continue  # finished meanwhile, or claimed again: not the claim that was lost
            if held.writing:  # the beat may have read the row our write just ended
                continue  # the write's answer says whether the claim was lost
            self._count_loss(held)
            log.warning("job %s lost its lease; cancelling our attempt", job_id)
            if held.job is not None:
                held.job.cancel("lease lost")

    async def _sweep_loop(self) -> None:
        """Put back the jobs whose lease expired, every poll interval; but never on leases
        that only look expired: after a forward jump of the wall clock (every worker's
        leases, until they renew: one lease), or after this process stood still (a job
        holding the GIL stops the heartbeat thread too: our own leases, until it beats)."""
        clock = ClockWatch()
        jumped_until = 0.0  # monotonic: no sweep before this (the wall clock jumped)
        stalled: tuple[int, float] | None = None  # the heartbeat round to wait for, and
        # when to give up waiting (a heartbeat thread that is stuck for good)
        while True:
            jump, gap = clock.step()
            now = time.monotonic()
            if jump > _CLOCK_JUMP:
                jumped_until = now + self._lease
                log.warning(
                    "the wall clock jumped %.1f s forward: no lease expiry for %g s, until "
                    "every worker has renewed its leases", jump, self._lease,
                )  # fmt: skip
            keeper = self._keeper
            if keeper is not None:
                if gap > self._poll + self._lease / 3:
                    # Two rounds: the one under way may have beaten before we stood still.
                    stalled = (keeper.rounds + 2, now + self._lease)
                if stalled is not None and (keeper.rounds >= stalled[0] or now >= stalled[1]):
                    stalled = None
            if now < jumped_until or stalled is not None:
                await anyio.sleep(self._poll)
                continue
            try:
                count = await self._store.requeue_expired()
            except Exception as exc:
                self._store_error = _one_line(exc)
                if not self._stop_on_fatal(exc):
                    log.exception("requeue_expired failed")
            else:
                if self._claim_errors == 0:
                    self._store_error = None
                if count:
                    log.info("put back %d job(s) whose lease expired", count)
                    self._poke()
            await anyio.sleep(self._poll)

    # -- stopping ------------------------------------------------------------------------

    def _stop_on_fatal(self, exc: Exception) -> bool:
        """True (and a stop without grace begun) for an error that waiting cannot fix."""
        if not isinstance(exc, StoreUnavailable) or exc.transient:
            return False
        if self._fatal is None:
            self._fatal = exc
            log.error("stopping: %s", _one_line(exc))
        self.stop(grace=0)
        return True

    async def _signal_loop(self, *, task_status: TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                if self._stopping:
                    log.warning("second %s: stopping at once", signal.Signals(signum).name)
                    self.stop(grace=0)
                else:
                    log.warning("%s: draining for up to %g s", signal.Signals(signum).name,
                                self._grace)  # fmt: skip
                    self.stop()

    async def _shutdown(self) -> None:
        """Stop claiming, drain within the grace, then cancel and release what is left."""
        self.stop()
        assert self._claim_done is not None
        await self._claim_done.wait()  # so that no claim lands after the drain below
        if not self._hurry:
            with anyio.move_on_after(self._grace) as scope:
                self._grace_scope = scope
                await self._wait_empty()
        if not self._held:
            return
        for held in list(self._held.values()):
            held.releasing = True
            if held.job is not None:
                held.job.cancel("the worker is stopping")
        with anyio.move_on_after(_CANCEL_WAIT):
            await self._wait_empty()
        for held in list(self._held.values()):
            if held.job is not None and not held.job.done():  # it ignored the cancellation
                self._forget(held)  # so that its outcome, if it ever comes, is not written
                if not held.lost:  # a lost claim is somebody else's to write about
                    await self._release(held)
        with anyio.move_on_after(self._lease):  # the writes still under way
            await self._wait_empty()

    async def _wait_empty(self) -> None:
        while self._held:
            self._emptied = anyio.Event()
            await self._emptied.wait()


def _groups(concurrency: int | Mapping[str, int], queues: Sequence[str] | None) -> list[_Group]:
    if isinstance(concurrency, Mapping):
        if queues is not None:
            raise ValueError("give queues through concurrency={queue: n}, or queues=, not both")
        if not concurrency:
            raise ValueError("concurrency={} names no queue")
        groups = []
        for queue, n in concurrency.items():
            check_text("concurrency key", queue)
            _check_count(f"concurrency[{queue!r}]", n)
            groups.append(_Group(queue, [queue], n))
        return groups
    _check_count("concurrency", concurrency)
    if queues is not None:
        if isinstance(queues, str):
            raise TypeError(f"queues must be a list of queue names, got {queues!r}")
        for queue in queues:
            check_text("queues item", queue)
        if not queues:
            raise ValueError("queues=[] names no queue")
    return [_Group("*", None if queues is None else list(queues), concurrency)]


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def _check_seconds(name: str, value: object, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def _where(held: _Held) -> str:
    job = held.job
    state = "not started" if job is None else job.state.name
    return f"job {state}, lost={held.lost}, releasing={held.releasing}, token={held.claimed.token}"


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def _error_text(error: BaseException, attempt: int, max_attempts: int) -> str:
    text = f"{type(error).__name__}: {error} (attempt {attempt} of {max_attempts})"
    return text[:_MAX_ERROR]
