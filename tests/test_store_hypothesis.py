"""Both stores, driven by hypothesis (issue 17 item 2).

1. **The same answer.** Enqueue fields are drawn from everything a caller could pass (text
   with any code point, NUL and lone surrogates included; ints far past 32 and 64 bits;
   floats with infinities and NaN; JSON arguments made of all of these) and enqueued into a
   SQLite store and a PostgreSQL store side by side: both must store the job and give back
   the same record, or both refuse it with the same error type, a TypeError or ValueError
   (never a driver's error).
2. **The protocol as a state machine.** Enqueue, claim, complete, fail, release, retry,
   cancel, heartbeat, lease expiry and requeue in any order, with stale claim tokens mixed
   in, checked after every step against a plain model of the rules in store/_protocol.py;
   run on each store (SQLite in a fresh file, PostgreSQL in a fresh schema per example).

Each machine owns one event loop for its run (asyncio or uvloop), as in test_stateful.py.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import tempfile
import time
from collections.abc import Coroutine, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

import asyncworkers as aw
from _helpers import LOOP_FACTORIES
from _store_pg import postgres_factory
from _store_support import SQLiteFactory, StoreFactory
from asyncworkers.store import JobRecord
from asyncworkers.store._fields import MAX_TIME

T = TypeVar("T")

# -- 1. the same answer from both stores ---------------------------------------------------

# Any code point, with the ones that databases disagree about drawn often.
AWKWARD = st.sampled_from(["\x00", "\ud800", "\udfff", "\U0010ffff", "\U0001f642", "é", "\\"])
CHARS = st.one_of(st.characters(codec=None, exclude_categories=()), AWKWARD)
TEXT = st.one_of(
    st.text(CHARS, max_size=12),
    # around the 1,024-byte limit of names, in 1-, 2- and 4-byte characters
    st.builds(lambda c, n: c * n, st.sampled_from(["k", "é", "\U0001f642"]), st.integers(1, 1100)),
)
INTS = st.one_of(
    st.integers(-4, 4),
    st.integers(-(2**31) - 2, -(2**31) + 2),
    st.integers(2**31 - 2, 2**31 + 2),
    st.integers(2**63 - 2, 2**63 + 2),
    st.integers(-(2**80), 2**80),
)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
JSON = st.recursive(
    st.none() | st.booleans() | INTS | FLOATS | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
# a delay that lands within an hour of the end of year 9999 could be accepted by one store
# and refused by the other a moment later (the limit moves with the clock): never drawn
DELAY_EDGE = MAX_TIME - time.time()
DELAYS = st.one_of(st.none(), FLOATS, INTS, st.floats(DELAY_EDGE - 1e9, DELAY_EDGE + 1e9)).filter(
    lambda d: d is None or (isinstance(d, float) and math.isnan(d)) or abs(d - DELAY_EDGE) > 3600
)
RUN_ATS = st.one_of(st.none(), FLOATS, INTS, st.floats(MAX_TIME - 10, MAX_TIME + 10))

FIELDS = st.fixed_dictionaries(
    {"task": st.one_of(TEXT, st.just("t"))},
    optional={
        "args": st.one_of(st.none(), st.dictionaries(TEXT, JSON, max_size=3), JSON),
        "priority": INTS,
        "queue": TEXT,
        "max_attempts": INTS,
        "key": st.one_of(st.none(), TEXT),
        "delay": DELAYS,
        "run_at": RUN_ATS,
    },
)

# the fields of a JobRecord both stores must agree on (ids differ: a PostgreSQL sequence
# moves on a refused or conflicting insert)
SAME = ("task", "args", "state", "priority", "queue", "attempts", "max_attempts", "key")


def run_both(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    return loop.run_until_complete(coro)


async def enqueue_or_error(store: aw.store.Store, fields: dict[str, Any]) -> Any:
    try:
        job_id = await store.enqueue(**fields)
    except (TypeError, ValueError) as exc:  # anything else fails the test as it is
        return type(exc), str(exc).split(" ", 1)[0]
    record = await store.get(job_id)
    assert record is not None
    return record


def test_both_stores_give_the_same_answer(tmp_path: Path) -> None:
    loop = LOOP_FACTORIES["asyncio"]()
    with ExitStack() as stack:
        stack.callback(loop.close)
        pg = stack.enter_context(postgres_factory(tmp_path)).make()
        lite = SQLiteFactory(tmp_path).make()
        for store in (pg, lite):
            run_both(loop, store.open())
            stack.callback(lambda s=store: run_both(loop, s.close()))  # type: ignore[misc]

        tolerances: dict[str, float] = {}

        @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
        @given(FIELDS)
        def same_answer(fields: dict[str, Any]) -> None:
            before = time.time()
            answers = [run_both(loop, enqueue_or_error(s, fields)) for s in (lite, pg)]
            after = time.time()
            lite_answer, pg_answer = answers
            if not isinstance(lite_answer, JobRecord) or not isinstance(pg_answer, JobRecord):
                assert lite_answer == pg_answer  # the same error type, naming the same field
                event(f"refused: {lite_answer[0].__name__} {lite_answer[1]}")
                return
            event("stored alike")
            for name in SAME:
                assert getattr(lite_answer, name) == getattr(pg_answer, name), name
            # times: PostgreSQL keeps microseconds, and each store was called at its moment
            # (a delay, or no time: now); a job found by its key was made by an earlier call
            tolerance = 1e-4 if fields.get("run_at") is not None else after - before + 1e-3
            if lite_answer.key is not None:
                tolerance = tolerances.setdefault(lite_answer.key, tolerance)
            assert abs(lite_answer.run_at - pg_answer.run_at) <= tolerance

        same_answer()


# -- 2. the protocol as a state machine ----------------------------------------------------

QUEUES = ("a", "b")
KEYS = (None, None, None, "k1", "k2")
FUTURE = 3600.0  # seconds: a job delayed this long never comes due in a run
W = "machine"


@dataclass
class ModelJob:
    id: int
    priority: int
    queue: str
    max_attempts: int
    key: str | None
    due: bool
    state: str = "queued"
    attempts: int = 0
    token: int | None = None  # the current claim's token, while running
    expired: bool = False  # running, with its lease ended and not renewed since


@dataclass
class Claim:
    id: int
    token: int


@dataclass
class StoreModel:
    jobs: dict[int, ModelJob] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)

    def due_in_order(self, queues: list[str] | None) -> list[ModelJob]:
        due = [
            j
            for j in self.jobs.values()
            if j.state == "queued" and j.due and (queues is None or j.queue in queues)
        ]
        return sorted(due, key=lambda j: (-j.priority, j.id))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = dict.fromkeys(aw.store.STATES, 0)
        for job in self.jobs.values():
            out[job.state] += 1
        return out

    def holds(self, claim: Claim) -> ModelJob | None:
        """The job if *claim* is its current one (writes with it are accepted)."""
        job = self.jobs[claim.id]
        return job if job.state == "running" and job.token == claim.token else None


class StoreMachine(RuleBasedStateMachine):
    loop_kind: ClassVar[str]
    store_kind: ClassVar[str]

    claims = Bundle("claims")

    def __init__(self) -> None:
        super().__init__()
        self.loop = LOOP_FACTORIES[self.loop_kind]()
        self.resources = ExitStack()
        self.resources.callback(self.loop.close)
        self.factory = self._factory()
        self.store = self.factory.make()
        self._run(self.store.open())
        self.model = StoreModel()

    def _factory(self) -> StoreFactory:
        if self.store_kind == "sqlite":
            folder = Path(tempfile.mkdtemp(prefix="aw-machine-"))
            self.resources.callback(shutil.rmtree, folder, ignore_errors=True)
            return SQLiteFactory(folder)
        return self.resources.enter_context(postgres_factory(Path(".")))

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            self._run(self.store.close())
        finally:
            self.resources.close()

    # -- rules ---------------------------------------------------------------------------

    @rule(
        priority=st.integers(-1, 1),
        queue=st.sampled_from(QUEUES),
        later=st.booleans(),
        max_attempts=st.integers(1, 3),
        key=st.sampled_from(KEYS),
    )
    def enqueue(
        self, priority: int, queue: str, later: bool, max_attempts: int, key: str | None
    ) -> None:
        job_id = self._run(
            self.store.enqueue(
                "t", {"n": len(self.model.jobs)}, priority=priority, queue=queue,
                delay=FUTURE if later else None, max_attempts=max_attempts, key=key,
            )
        )  # fmt: skip
        if key is not None and key in self.model.keys:
            assert job_id == self.model.keys[key]  # the first job with the key
            return
        assert job_id not in self.model.jobs
        self.model.jobs[job_id] = ModelJob(job_id, priority, queue, max_attempts, key, not later)
        if key is not None:
            self.model.keys[key] = job_id

    @rule(target=claims, limit=st.integers(1, 3), queues=st.sampled_from([None, ["a"], ["b"]]))
    def claim(self, limit: int, queues: list[str] | None) -> Any:
        expected = self.model.due_in_order(queues)[:limit]
        got = self._run(self.store.claim(queues, limit, 30, W))
        assert [c.id for c in got] == [j.id for j in expected]
        for claimed, job in zip(got, expected, strict=True):
            assert claimed.token != job.token
            job.state, job.attempts, job.token = "running", job.attempts + 1, claimed.token
            assert (claimed.attempt, claimed.max_attempts) == (job.attempts, job.max_attempts)
        return multiple(*(Claim(c.id, c.token) for c in got))

    @rule(claim=claims)
    def complete(self, claim: Claim) -> None:
        job = self.model.holds(claim)
        assert self._run(self.store.complete(claim.id, claim.token, '"ok"')) is (job is not None)
        if job is not None:
            job.state, job.token, job.expired = "succeeded", None, False

    @rule(claim=claims, again=st.booleans())
    def fail(self, claim: Claim, again: bool) -> None:
        job = self.model.holds(claim)
        retry_at = time.time() if again else None
        assert self._run(self.store.fail(claim.id, claim.token, "E", retry_at)) is (job is not None)
        if job is not None:
            out = retry_at is None or job.attempts >= job.max_attempts
            job.state, job.token, job.expired, job.due = (
                "dead" if out else "queued", None, False, True,
            )  # fmt: skip

    @rule(claim=claims)
    def release(self, claim: Claim) -> None:
        job = self.model.holds(claim)
        assert self._run(self.store.release(claim.id, claim.token)) is (job is not None)
        if job is not None:
            job.state, job.token, job.expired, job.attempts = (
                "queued",
                None,
                False,
                job.attempts - 1,
            )

    @rule(claim=claims)
    def heartbeat(self, claim: Claim) -> None:
        job = self.model.holds(claim)
        lost = self._run(self.store.heartbeat([(claim.id, claim.token)], 30))
        assert lost == (set() if job is not None else {claim.id})
        if job is not None:
            job.expired = False

    @precondition(lambda self: any(j.state == "running" for j in self.model.jobs.values()))
    @rule()
    def expire_leases(self) -> None:
        self._run(self.factory.expire_leases(self.store))
        for job in self.model.jobs.values():
            job.expired = job.expired or job.state == "running"

    @rule()
    def requeue_expired(self) -> None:
        expired = [j for j in self.model.jobs.values() if j.state == "running" and j.expired]
        assert self._run(self.store.requeue_expired()) == len(expired)
        for job in expired:  # a crash counts as an attempt: dead when none is left
            job.state = "dead" if job.attempts >= job.max_attempts else "queued"
            job.token, job.expired = None, False

    @precondition(lambda self: self.model.jobs)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        job = self.model.jobs[data.draw(st.sampled_from(sorted(self.model.jobs)))]
        ok = job.state in ("dead", "cancelled")
        assert self._run(self.store.retry(job.id)) is ok
        if ok:
            job.state, job.attempts, job.due = "queued", 0, True

    @precondition(lambda self: self.model.jobs)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job = self.model.jobs[data.draw(st.sampled_from(sorted(self.model.jobs)))]
        ok = job.state == "queued"
        assert self._run(self.store.cancel(job.id)) is ok
        if ok:
            job.state = "cancelled"

    @rule(claim=consumes(claims))
    def forget(self, claim: Claim) -> None:
        """Let go of a claim handle (keeps the bundle small)."""

    # -- the check -------------------------------------------------------------------------

    @invariant()
    def store_matches_model(self) -> None:
        assert self._run(self.store.counts()) == self.model.counts()
        records = {r.id: r for r in self._run(self.store.jobs(limit=10_000))}
        assert sorted(records) == sorted(self.model.jobs)
        for job in self.model.jobs.values():
            record = records[job.id]
            assert (record.state, record.attempts) == (job.state, job.attempts), job
            assert (record.priority, record.queue, record.key) == (job.priority, job.queue, job.key)


MACHINE_SETTINGS = settings(
    max_examples=10,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def machines() -> Iterator[tuple[str, type[StoreMachine]]]:
    for store_kind in ("sqlite", "postgresql"):
        for loop_kind in LOOP_FACTORIES:
            name = f"{store_kind}-{loop_kind}"
            machine = type(
                f"StoreMachine_{store_kind}_{loop_kind}",
                (StoreMachine,),
                {"store_kind": store_kind, "loop_kind": loop_kind},
            )
            yield name, machine


MACHINES = dict(machines())


@pytest.mark.parametrize("kind", sorted(MACHINES))
def test_store_state_machine(kind: str) -> None:
    run_state_machine_as_test(MACHINES[kind], settings=MACHINE_SETTINGS)
