"""The runtime as a state machine: random submits, cancels, pauses, resizes and shutdowns,
checked step by step against a model of what must have happened.

Every job is controllable: it logs its start, then waits on its own event until the machine
releases it (to return, or to raise). So no step needs a sleep: after each operation the
machine lets the loop run until the runtime is quiet (every task blocked, by
``anyio.wait_all_tasks_blocked()``, and nothing observable changed since the last time it
was), then checks that it matches the model exactly. The model says which jobs run: free
workers take the highest priority first, FIFO within a level, and nothing starts while
paused, so the whole log of starts and ends must equal the model's, whatever the worker
count. That covers priority order, "a cancelled job never starts or goes on", each job
ending in exactly one terminal state (counted by an ``on_complete`` hook) and the counters
of ``metrics()``.

The machine owns one event loop for its run (asyncio or uvloop, one TestCase each): a host
task holds the ``async with Runtime`` block, so that the task group is entered and left in
one task, and each step is a short ``run_until_complete`` on that loop.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import anyio
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import asyncworkers as aw
from _helpers import HANG_GUARD, LOOP_FACTORIES, Boom

T = TypeVar("T")

# Steps before a shutdown may be drawn.
SHUTDOWN_AFTER = 25
# A hang guard for the end of a run; short, since a failing run is replayed while shrinking.
TEARDOWN_GUARD = 5.0

PENDING, RUNNING = aw.JobState.PENDING, aw.JobState.RUNNING
COMPLETED, FAILED, CANCELLED = aw.JobState.COMPLETED, aw.JobState.FAILED, aw.JobState.CANCELLED
TERMINAL = frozenset((COMPLETED, FAILED, CANCELLED))

# The token slots a job may draw (None most often): two roots and a child of the first.
# Cancelling a slot may put a fresh token in it; jobs keep the token they were given.
TOKEN_CHOICES = (None, None, None, 0, 1, 2)
CHILD_OF = {2: 0}

# A job to submit: priority, token slot (or None), with Retry(attempts=2), with a timeout.
JobSpec = tuple[int, int | None, bool, bool]
JOB_SPECS = st.tuples(
    st.integers(0, 2), st.sampled_from(TOKEN_CHOICES), st.booleans(), st.booleans()
)


@dataclass
class ModelJob:
    jid: int
    priority: int
    token: tuple[int, int] | None  # (slot, generation of the token in it)
    retry: bool
    handle: aw.Job[int] = field(init=False)  # bound once submit_nowait returns it
    state: aw.JobState = PENDING
    attempts: int = 0
    order: int = 0  # position in its priority level: set at each (re)queueing
    fail_next: bool = False
    gate: asyncio.Event | None = None  # made by the job when an attempt starts


class RuntimeMachine(RuleBasedStateMachine):
    loop_kind: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        self.loop = LOOP_FACTORIES[self.loop_kind]()
        self.rt: aw.Runtime | None = None
        self.host: asyncio.Task[None] | None = None
        self.stop: asyncio.Event | None = None
        self.shutdown_task: asyncio.Task[None] | None = None
        self.finished = collections.Counter[int]()  # on_complete calls per job id
        self.log: list[tuple[str, int]] = []  # what the jobs did, in order
        self.tokens: list[aw.CancellationToken] = []
        # the model
        self.jobs: dict[int, ModelJob] = {}
        self.expected_log: list[tuple[str, int]] = []
        self.queue: list[int] = []
        self.running: list[int] = []
        self.ids = itertools.count()
        self.order = itertools.count()
        self.workers = 1
        self.paused = False
        self.phase = "open"  # then "closing" (a shutdown is under way) and "closed"
        self.tokens_cancelled: set[int] = set()  # slots holding a cancelled token
        self.token_generation = [0, 0, 0]
        self.submitted = self.retried = 0
        self.steps = 0

    # -- driving the loop ----------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def _step(self, action: Callable[[], T]) -> T:
        """Do *action* in the loop, then let the runtime catch up with the model."""
        self.steps += 1

        async def step() -> T:
            result = action()
            with anyio.fail_after(HANG_GUARD):
                await self._quiet()
            return result

        return self._run(step())

    async def _quiet(self) -> None:
        """Return once every task is blocked and nothing observable changed meanwhile.

        Quiet once is not enough: a callback the runtime scheduled (a retry's requeue is a
        timer due at once) runs after every task blocked, and may wake a worker again.
        """
        seen = None
        while True:
            await anyio.wait_all_tasks_blocked()
            now = repr(self._observed())
            if now == seen:
                return
            seen = now

    async def _host(self, workers: int, ready: asyncio.Future[None]) -> None:
        self.stop = asyncio.Event()
        async with aw.Runtime(workers) as rt:
            rt.on_complete(lambda job: self.finished.update([job.id]))
            self.rt = rt
            ready.set_result(None)
            await self.stop.wait()

    async def _job(self, jid: int) -> int:
        job = self.jobs[jid]
        self.log.append(("start", jid))
        job.gate = asyncio.Event()
        await job.gate.wait()
        self.log.append(("end", jid))
        if job.fail_next:
            job.fail_next = False
            raise Boom(f"job {jid} failed")
        return jid

    # -- the model -----------------------------------------------------------------------

    def _start_what_fits(self) -> None:
        if self.paused or self.phase == "closed":
            return
        while self.queue and len(self.running) < self.workers:
            jid = min(self.queue, key=lambda j: (-self.jobs[j].priority, self.jobs[j].order))
            self.queue.remove(jid)
            job = self.jobs[jid]
            job.state = RUNNING
            job.attempts += 1
            self.running.append(jid)
            self.expected_log.append(("start", jid))

    def _enqueue(self, job: ModelJob) -> None:
        job.state = PENDING
        job.order = next(self.order)
        self.queue.append(job.jid)

    def _enqueue_retry(self, job: ModelJob) -> None:
        """A retry goes ahead of the jobs of its priority (the latest retry first)."""
        job.state = PENDING
        job.order = -next(self.order) - 1
        self.queue.append(job.jid)

    def _cancel_in_model(self, job: ModelJob) -> None:
        if job.state is PENDING:
            self.queue.remove(job.jid)
        elif job.state is RUNNING:
            self.running.remove(job.jid)
        job.state = CANCELLED

    def _maybe_closed(self) -> None:
        if self.phase == "closing" and not self.queue and not self.running:
            self.phase = "closed"

    def _active(self) -> list[ModelJob]:
        return [job for job in self.jobs.values() if job.state not in TERMINAL]

    def _token_hits(self, index: int) -> set[int]:
        """The tokens that cancelling token *index* cancels (itself and its children)."""
        return {index} | {child for child, parent in CHILD_OF.items() if parent == index}

    def _expected(self) -> tuple[Any, ...]:
        states = {j.jid: j.state for j in self.jobs.values()}
        attempts = {j.jid: j.attempts for j in self.jobs.values()}
        counts = collections.Counter(j.state for j in self.jobs.values())
        workers = 0 if self.phase == "closed" else max(self.workers, len(self.running))
        metrics = (
            self.submitted,
            counts[COMPLETED],
            counts[FAILED],
            counts[CANCELLED],
            self.retried,
            len(self.running),
            len(self.queue),
            workers,
        )
        finished = {j.jid: int(j.state in TERMINAL) for j in self.jobs.values()}
        return (self.expected_log, states, attempts, metrics, finished, self.phase == "closed")

    def _observed(self) -> tuple[Any, ...]:
        assert self.rt is not None
        states = {j.jid: j.handle.state for j in self.jobs.values()}
        attempts = {j.jid: j.handle.attempts for j in self.jobs.values()}
        m = self.rt.metrics()
        metrics = (
            m.submitted,
            m.completed,
            m.failed,
            m.cancelled,
            m.retried,
            m.running,
            m.pending,
            m.workers,
        )
        finished = {j.jid: self.finished[j.handle.id] for j in self.jobs.values()}
        shut = self.shutdown_task is not None and self.shutdown_task.done()
        return (self.log, states, attempts, metrics, finished, shut)

    # -- rules ---------------------------------------------------------------------------

    @initialize(workers=st.integers(1, 3))
    def start(self, workers: int) -> None:
        self.workers = workers
        self.tokens = [aw.CancellationToken(), aw.CancellationToken()]
        self.tokens.append(self.tokens[0].child())

        async def begin() -> None:
            ready = self.loop.create_future()
            self.host = asyncio.create_task(self._host(workers, ready))
            with anyio.fail_after(HANG_GUARD):
                await ready

        self._run(begin())

    @rule(spec=JOB_SPECS)
    def submit(self, spec: JobSpec) -> None:
        self._submit([spec])

    @rule(specs=st.lists(JOB_SPECS, min_size=2, max_size=5))
    def submit_several(self, specs: list[JobSpec]) -> None:
        """Several jobs in one step, before any worker runs: a test of the queue's order."""
        self._submit(specs)

    def _submit(self, specs: list[JobSpec]) -> None:
        rt = self.rt
        assert rt is not None
        if self.phase != "open":

            def refused() -> None:
                for _ in specs:
                    with pytest.raises(aw.RuntimeClosed):
                        rt.submit_nowait(self._job, -1)

            self._step(refused)
            return
        # the model first: the jobs start during the step
        submits: list[tuple[ModelJob, aw.JobOptions]] = []
        for priority, token, retry, timeout in specs:
            job = ModelJob(
                next(self.ids),
                priority,
                None if token is None else (token, self.token_generation[token]),
                retry,
            )
            options: aw.JobOptions = {"priority": priority}
            if token is not None:
                options["token"] = self.tokens[token]
            if retry:
                options["retry"] = aw.Retry(attempts=2)
            if timeout:
                options["timeout"] = 3600.0  # a cancel scope that never expires
            self.jobs[job.jid] = job
            self.submitted += 1
            if token is not None and token in self.tokens_cancelled:
                job.state = CANCELLED  # at once: it never starts
            else:
                self._enqueue(job)
            submits.append((job, options))
        self._start_what_fits()

        def act() -> None:
            for job, options in submits:
                job.handle = rt.submit_nowait(self._job, job.jid, **options)

        self._step(act)

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data(), fail=st.booleans())
    def release(self, data: st.DataObject, fail: bool) -> None:
        """Let a running job return, or raise (retried once if it has a Retry)."""
        self._release(data.draw(st.sampled_from(sorted(self.running)), label="job"), fail)

    def _release(self, jid: int, fail: bool) -> None:
        job = self.jobs[jid]
        gate = job.gate
        assert gate is not None
        job.fail_next = fail
        self.running.remove(jid)
        self.expected_log.append(("end", jid))
        if not fail:
            job.state = COMPLETED
        elif job.retry and job.attempts < 2:
            # the freed worker takes the next job first; the retry is queued after that,
            # ahead of the jobs of its priority
            self.retried += 1
            job.state = PENDING
            self._start_what_fits()
            self._enqueue_retry(job)
        else:
            job.state = FAILED
        self._start_what_fits()
        self._maybe_closed()
        self._step(gate.set)

    @precondition(lambda self: bool(self.running))
    @rule()
    def release_oldest(self) -> None:
        """Let the job that started first return (releases are drawn more often this way)."""
        self._release(self.running[0], fail=False)

    @precondition(lambda self: bool(self.running))
    @rule(fail=st.booleans())
    def release_newest(self, fail: bool) -> None:
        self._release(self.running[-1], fail)

    @precondition(lambda self: bool(self.jobs))
    @rule(data=st.data())
    def cancel_job(self, data: st.DataObject) -> None:
        jid = data.draw(st.sampled_from(sorted(self.jobs)), label="job")
        job = self.jobs[jid]
        expected = job.state not in TERMINAL
        if expected:
            self._cancel_in_model(job)
            self._start_what_fits()
            self._maybe_closed()
        assert self._step(job.handle.cancel) is expected

    @rule(index=st.sampled_from((0, 1, 2)), renew=st.booleans())
    def cancel_token(self, index: int, renew: bool) -> None:
        """Cancel the token in a slot (and its child), then maybe put fresh ones in."""
        token = self.tokens[index]
        hit = self._token_hits(index) - self.tokens_cancelled
        if not token.cancelled:
            self.tokens_cancelled |= hit
            for job in self._active():
                if job.token in {(slot, self.token_generation[slot]) for slot in hit}:
                    self._cancel_in_model(job)
            self._start_what_fits()
            self._maybe_closed()
        assert self._step(lambda: token.cancel(f"token {index}")) is bool(hit)
        if renew:
            for slot in sorted(self._token_hits(index)):
                parent = CHILD_OF.get(slot)
                fresh = aw.CancellationToken() if parent is None else self.tokens[parent].child()
                self.tokens[slot] = fresh
                self.token_generation[slot] += 1
                if fresh.cancelled:  # the child of a cancelled parent
                    self.tokens_cancelled.add(slot)
                else:
                    self.tokens_cancelled.discard(slot)

    @precondition(lambda self: self.phase == "open")
    @rule(paused=st.sampled_from((False, False, True)))
    def pause_or_resume(self, paused: bool) -> None:
        rt = self.rt
        assert rt is not None
        self.paused = paused
        self._start_what_fits()
        self._step(rt.pause if paused else rt.resume)

    @precondition(lambda self: self.phase == "open")
    @rule(workers=st.integers(1, 4))
    def resize(self, workers: int) -> None:
        rt = self.rt
        assert rt is not None
        self.workers = workers
        self._start_what_fits()
        self._step(lambda: rt.resize(workers))

    # Late in a run, so that most steps exercise an open runtime.
    @precondition(lambda self: self.phase == "open" and self.steps >= SHUTDOWN_AFTER)
    @rule(mode=st.sampled_from(("drain", "cancel_pending", "now")))
    def shutdown(self, mode: str) -> None:
        rt = self.rt
        assert rt is not None
        self.phase = "closing"
        if mode in ("cancel_pending", "now"):
            for job in self._active():
                if job.state is PENDING:
                    self._cancel_in_model(job)
        if mode == "now":
            for job in self._active():
                self._cancel_in_model(job)
        else:
            self.paused = False  # shutdown(wait=True) resumes a paused runtime
            self._start_what_fits()
        self._maybe_closed()

        def act() -> None:
            self.shutdown_task = asyncio.create_task(
                rt.shutdown(wait=mode != "now", cancel_pending=mode == "cancel_pending")
            )

        self._step(act)

    # -- checks --------------------------------------------------------------------------

    @invariant()
    def runtime_matches_the_model(self) -> None:
        if self.rt is None:
            return
        log, states, attempts, metrics, finished, shut = self._observed()
        (want_log, want_states, want_attempts, want_metrics, want_finished, want_shut) = (
            self._expected()
        )
        # starts in priority order (FIFO within a level), and nothing after a cancel
        assert log == want_log
        assert states == want_states
        assert attempts == want_attempts
        # (submitted, completed, failed, cancelled, retried, running, pending, workers)
        assert metrics == want_metrics
        assert finished == want_finished  # one terminal state, reported once
        assert shut == want_shut
        for job in self.jobs.values():
            handle = job.handle
            assert handle.done() == (job.state in TERMINAL)
            if job.state is COMPLETED:
                assert handle.result() == job.jid
            elif job.state is FAILED:
                assert isinstance(handle.exception(), Boom)
            elif job.state is CANCELLED:
                assert isinstance(handle.exception(), aw.JobCancelled)

    def teardown(self) -> None:
        try:
            if self.host is not None:
                self._run(self._close())
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    async def _close(self) -> None:
        assert self.rt is not None
        assert self.stop is not None
        assert self.host is not None
        with anyio.fail_after(TEARDOWN_GUARD):
            for job in self.jobs.values():  # a draining shutdown would wait for them
                job.handle.cancel("teardown")
            await self.rt.shutdown(wait=False)
            self.stop.set()
            await self.host
            if self.shutdown_task is not None:
                await self.shutdown_task
        assert all(job.handle.done() for job in self.jobs.values())
        assert all(self.finished[job.handle.id] == 1 for job in self.jobs.values())
        assert asyncio.all_tasks() == {asyncio.current_task()}


class AsyncioRuntimeMachine(RuntimeMachine):
    loop_kind = "asyncio"


class UvloopRuntimeMachine(RuntimeMachine):
    loop_kind = "uvloop"


SETTINGS = settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TestRuntimeStateMachineAsyncio = AsyncioRuntimeMachine.TestCase
TestRuntimeStateMachineAsyncio.settings = SETTINGS
TestRuntimeStateMachineUvloop = UvloopRuntimeMachine.TestCase
TestRuntimeStateMachineUvloop.settings = SETTINGS
