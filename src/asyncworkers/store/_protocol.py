"""The store protocol: what the Manager needs from a durable job store.

A store keeps jobs as rows. The Manager *claims* a batch of due jobs with a lease, runs them,
and writes each outcome back (*complete*, *fail*, *release*), renewing the leases of the jobs
it still runs (*heartbeat*). Everything else (``get``, ``result``, ``counts``, ``dead``,
``retry``, ``cancel``, ``purge``) is for people and tools. Any object with these methods is a
store: :class:`~asyncworkers.store.SQLiteStore` and :class:`~asyncworkers.store.PostgresStore`
are two; a user may plug in their own.

Rules every store keeps (the behaviour tests check them on each store):

- Times are unix seconds (``time.time()``, float) in the API.
- States: ``queued`` (waiting, a retry waiting for its backoff included), ``running``,
  ``succeeded``, ``dead`` (out of attempts, or a row that can never run) and ``cancelled``.
- ``claim`` takes due ``queued`` rows (``run_at <= now``) by priority, higher first, then
  FIFO (lower id first); it counts one attempt (``attempts += 1``) and one claim
  (``claims += 1``), and stamps the lease. Each claim of a row is handed out exactly once.
- **Fencing.** Every write about a claimed job carries the claim's ``token`` (the row's
  claim counter at claim time). A write whose token is not the row's current one, or about a
  row that is no longer ``running``, changes nothing and returns False. A lease that expired
  while nobody re-queued or re-claimed the row is not lost yet: its writes and heartbeats are
  still accepted (nobody else can be running it).
- ``release`` puts a running job back to ``queued`` *without* counting its attempt
  (``attempts -= 1``); the claim counter keeps growing, so a released claim stays fenced out.
- ``requeue_expired`` puts every ``running`` row whose lease is over back to ``queued``, or to
  ``dead`` when it has used all its attempts (a job that keeps killing its worker ends there);
  a crash counts as an attempt.
- Payloads and results are JSON text; nothing is ever unpickled from a store.
- ``advance_schedule`` is a compare-and-set of a periodic task's mark together with the
  insert of its due runs, in one transaction: it is what makes each run of a periodic task
  enqueued once by any number of workers, with no leader (see ``_periodic``).

Changes from the first sketch (/work/notes/store-protocol.md): the fencing token is a claim
counter (``Claimed.token``) apart from the attempt number, because ``release`` un-counts an
attempt and the next claim would otherwise reuse the released claim's number; the writes take
``token`` where the sketch said ``attempt``; ``SyncHeartbeat`` is spelled out; ``NewJob`` is
the validated form of one job to enqueue (``new_job`` in ``_jobs`` builds it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from ._fields import MAX_PAYLOAD_BYTES, check_job

__all__ = [
    "DEFAULT_LEASE",
    "ENDED",
    "MAX_PAYLOAD_BYTES",
    "PURGE_BATCH",
    "STATES",
    "Claimed",
    "JobRecord",
    "NewJob",
    "State",
    "Store",
    "SyncHeartbeat",
]

State = Literal["queued", "running", "succeeded", "dead", "cancelled"]

#: Every state, in the order ``counts()`` and ``asyncworkers status`` show them.
STATES: tuple[State, ...] = ("queued", "running", "succeeded", "dead", "cancelled")

#: The states of a job that will not run again by itself: what ``purge`` may delete.
ENDED: tuple[State, ...] = ("succeeded", "dead", "cancelled")

#: Rows ``purge`` deletes per transaction.
PURGE_BATCH = 1000

#: Seconds a claim holds a job before another worker may take it over (the Manager renews it).
DEFAULT_LEASE = 30.0


@dataclass(frozen=True, slots=True)
class NewJob:
    """One job to enqueue, checked when made: ``args_json`` is the JSON text of a dict.

    Build it with :func:`asyncworkers.store.new_job`, which encodes the arguments and turns
    ``delay`` into ``run_at``. Made directly, its fields are checked all the same (the
    ranges of ``store._fields``): no value that a store cannot hold reaches a driver.
    """

    task: str
    args_json: str
    priority: int = 0
    queue: str = "default"
    run_at: float | None = None  # None: now (the store's clock)
    max_attempts: int = 3
    key: str | None = None  # idempotency: a second job with this key is not created

    def __post_init__(self) -> None:
        check_job(
            self.task,
            self.args_json,
            self.priority,
            self.queue,
            self.run_at,
            self.max_attempts,
            self.key,
        )


@dataclass(frozen=True, slots=True)
class Claimed:
    """One claimed attempt of a job, as ``claim`` hands it to the Manager."""

    id: int
    task: str
    args_json: str  # raw: the Manager checks it (a hostile row is dead-lettered, never run)
    queue: str
    priority: int
    attempt: int  # 1 for the first run; released attempts are not counted
    max_attempts: int
    lease_until: float
    token: int  # the fencing token: the row's claim counter at this claim


@dataclass(frozen=True, slots=True)
class JobRecord:
    """What ``get(id)`` returns: one job as stored. ``args``/``result`` are decoded JSON."""

    id: int
    task: str
    args: Any
    state: State
    priority: int
    queue: str
    attempts: int
    max_attempts: int
    result: Any
    error: str | None
    key: str | None
    enqueued_at: float
    run_at: float
    started_at: float | None  # the latest claim
    finished_at: float | None
    lease_until: float | None = None
    worker: str | None = None  # who ran the latest attempt (None: never run, or released)


@runtime_checkable
class SyncHeartbeat(Protocol):
    """A blocking heartbeat on a connection of its own, for the Manager's heartbeat thread.

    A thread keeps the leases alive while the event loop is blocked by a job that should not
    block it. ``beat`` has the meaning of :meth:`Store.heartbeat`.
    """

    def beat(self, held: Sequence[tuple[int, int]], lease: float) -> set[int]:
        """Renew the leases of *held* ``(id, token)`` pairs; return the ids that are lost."""
        ...

    def close(self) -> None:
        """Release the connection (idempotent)."""
        ...


@runtime_checkable
class Store(Protocol):
    """A durable job store. See the module docstring for the rules every store keeps."""

    async def open(self) -> None:
        """Connect and create or upgrade the schema. Raises ``StoreUnavailable`` (naming the
        path, or the host and port) when the database cannot be reached."""
        ...

    async def close(self) -> None:
        """Release every connection (idempotent)."""
        ...

    async def enqueue(
        self,
        task: str,
        args: dict[str, Any] | None = None,
        *,
        priority: int = 0,
        queue: str = "default",
        run_at: float | None = None,
        delay: float | None = None,
        max_attempts: int = 3,
        key: str | None = None,
    ) -> int:
        """Add one job; returns its id (the existing job's id when *key* is already used)."""
        ...

    async def enqueue_many(self, jobs: Iterable[NewJob]) -> list[int]:
        """Add many jobs in few round trips; returns their ids in input order."""
        ...

    async def claim(
        self, queues: Sequence[str] | None, limit: int, lease: float, worker: str
    ) -> list[Claimed]:
        """Claim up to *limit* due jobs from *queues* (None: every queue), priority first."""
        ...

    async def complete(self, id: int, token: int, result_json: str) -> bool:
        """Mark a claimed job ``succeeded`` with its result; False when fenced out."""
        ...

    async def fail(self, id: int, token: int, error: str, retry_at: float | None) -> bool:
        """Record a failed attempt: back to ``queued`` due at *retry_at*, or ``dead`` when
        *retry_at* is None. False when fenced out."""
        ...

    async def release(self, id: int, token: int) -> bool:
        """Put a claimed job back to ``queued`` without counting the attempt."""
        ...

    async def heartbeat(self, held: Sequence[tuple[int, int]], lease: float) -> set[int]:
        """Renew the leases of *held* ``(id, token)`` pairs; return the ids that are lost."""
        ...

    def sync_heartbeat(self) -> SyncHeartbeat:
        """A blocking heartbeat with a connection of its own (for a thread)."""
        ...

    async def requeue_expired(self) -> int:
        """Put back the jobs whose lease is over (``dead`` when out of attempts); the count."""
        ...

    async def wait_for_work(self, timeout: float) -> None:
        """Return when new work may be due (LISTEN/NOTIFY), or after *timeout* seconds."""
        ...

    async def get(self, id: int) -> JobRecord | None:
        """The job with this id, or None."""
        ...

    async def result(self, id: int, timeout: float | None = None) -> Any:
        """Wait for the job to end; its decoded result. Raises ``JobDead`` (dead),
        ``aw.JobCancelled`` (cancelled), ``KeyError`` (no such job), ``TimeoutError``."""
        ...

    async def counts(self, queue: str | None = None) -> dict[State, int]:
        """``{state: number of jobs}`` for every state, zeros included."""
        ...

    async def queue_counts(self) -> dict[str, dict[State, int]]:
        """``counts()`` per queue (every state present for each queue)."""
        ...

    async def oldest_waiting(self) -> JobRecord | None:
        """The due ``queued`` job that was enqueued first, or None."""
        ...

    async def dead(self, limit: int = 100) -> list[JobRecord]:
        """The dead letters, newest first."""
        ...

    async def retry(self, id: int) -> bool:
        """Give a ``dead`` or ``cancelled`` job a fresh set of attempts; False otherwise."""
        ...

    async def cancel(self, id: int) -> bool:
        """Cancel a ``queued`` job; False when it is not waiting (a running job finishes)."""
        ...

    async def jobs(
        self,
        *,
        state: State | None = None,
        queue: str | None = None,
        task: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        """Jobs that match every filter given, newest (highest id) first, at most *limit*."""
        ...

    async def purge(self, older_than: float, states: Collection[State] | None = None) -> int:
        """Delete ended jobs (succeeded, dead, cancelled; or those of *states*) finished
        before *older_than* (unix seconds), a batch of rows per transaction so that no
        lock is held long; returns how many."""
        ...

    async def schedule_mark(self, name: str) -> float | None:
        """The latest instant the periodic task *name* was enqueued for (None: never)."""
        ...

    async def advance_schedule(
        self, name: str, seen: float | None, latest: float, jobs: Sequence[NewJob]
    ) -> bool:
        """In one transaction: move the mark of *name* from *seen* (None: no mark yet) to
        *latest* and add *jobs*; only if the mark is still *seen* (compare and set), so
        that of workers racing for one instant exactly one adds its jobs. True if it did."""
        ...
