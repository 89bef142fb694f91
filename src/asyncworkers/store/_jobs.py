"""Checking what goes into a store, and decoding what comes out: shared by every store.

A store calls :func:`new_job` for each job it is asked to enqueue, so that bad input fails at
the call that made it (TypeError/ValueError naming the field), whatever the database.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio

from .._core._exceptions import JobCancelled
from . import _deadlock
from ._errors import JobDead
from ._fields import (
    MAX_PAYLOAD_BYTES,
    check_limit,
    check_text,
    check_time,
    encode_json,
    run_at_from,
    show,
)
from ._protocol import ENDED, STATES, JobRecord, NewJob, State, Store

__all__ = [
    "decode_json",
    "encode_args",
    "encode_result",
    "job_filters",
    "new_job",
    "purge_states",
    "wait_result",
]


def encode_args(args: object, *, task: str = "?") -> str:
    """The JSON text of a job's arguments: a dict with str keys (or None for ``{}``)."""
    if args is None:
        return "{}"
    if not isinstance(args, dict):
        raise TypeError(
            f"job arguments of {show(task)} must be a dict (the task's keyword arguments), "
            f"got {type(args).__name__}"
        )
    return encode_json("job arguments of", args, task=task, limit=MAX_PAYLOAD_BYTES)


def _dump_args(args: object, task: str) -> str:
    """:func:`encode_args` without the text's checks, which ``NewJob`` makes."""
    if args is None:
        return "{}"
    if not isinstance(args, dict):
        return encode_args(args, task=task)  # raises, naming the type
    return encode_json("job arguments of", args, task=task, check=False)


def encode_result(value: object, *, task: str = "?") -> str:
    """The JSON text of a task's return value; TypeError naming the task otherwise."""
    try:
        return encode_json("the result of task", value, task=task)
    except ValueError as exc:  # NUL, a lone surrogate, nested too deep: no JSON we keep
        raise TypeError(str(exc)) from None


def decode_json(text: str | None) -> Any:
    """Decode a stored JSON column (None stays None)."""
    return None if text is None else json.loads(text)


from ..ops._tracing import TRACE_KEY, inject_trace  # noqa: E402 - light, no opentelemetry


def new_job(
    task: str,
    args: dict[str, Any] | None = None,
    *,
    priority: int = 0,
    queue: str = "default",
    run_at: float | None = None,
    delay: float | None = None,
    max_attempts: int = 3,
    key: str | None = None,
) -> NewJob:
    """Check one job's fields and build its :class:`NewJob` (``delay`` becomes ``run_at``).

    TypeError or ValueError, naming the field, for a value outside what every store holds
    (the ranges are in ``store._fields`` and docs/store.md).
    """
    check_text("task", task)  # first: the other messages name the task
    trace = inject_trace()  # None unless OpenTelemetry is on and a span is current
    if trace is not None and isinstance(args, dict | None):
        args = {**(args or {}), TRACE_KEY: trace}
    return NewJob(
        task=task,
        args_json=_dump_args(args, task),
        priority=priority,
        queue=queue,
        run_at=run_at_from(delay, run_at, time.time()),
        max_attempts=max_attempts,
        key=key,
    )


def job_filters(
    *, state: object, queue: object, task: object, limit: object
) -> tuple[list[str], list[Any]]:
    """The checked filters of ``Store.jobs``: the columns to match and their values."""
    check_limit(limit)
    if state is not None and state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
    columns: list[str] = []
    values: list[Any] = []
    for column, value in (("state", state), ("queue", queue), ("task", task)):
        if value is None:
            continue
        check_text(column, value)
        columns.append(column)
        values.append(value)
    return columns, values


def purge_states(older_than: object, states: object) -> tuple[State, ...]:
    """The checked arguments of ``Store.purge``: the states to delete (default: ended)."""
    check_time("older_than", older_than)
    if states is None:
        return ENDED
    if isinstance(states, str) or not all(isinstance(s, str) for s in states):  # type: ignore[attr-defined]
        raise TypeError(f"states must be a collection of state names, got {states!r}")
    chosen = tuple(dict.fromkeys(states))  # type: ignore[call-overload]
    wrong = [s for s in chosen if s not in ENDED]
    if wrong or not chosen:
        raise ValueError(
            f"purge deletes ended jobs only ({', '.join(ENDED)}), got {list(chosen)!r}"
        )
    return chosen


async def wait_result(store: Store, id: int, timeout: float | None) -> Any:
    """``Store.result`` by polling ``get``: a store without notifications can use this.

    Polls at 5 ms growing to 0.5 s, so a long wait costs few queries.
    """
    pause = 0.005
    limit = anyio.fail_after(timeout) if timeout is not None else _no_limit()
    with limit, _deadlock.waiting(store) as check:
        while True:
            record = await store.get(id)
            if record is None:
                raise KeyError(f"no job with id {id}")
            outcome = _ended(record)
            if outcome is not _NOT_YET:
                return outcome
            check(record)  # inside a job of a Manager: raises if it can never end
            await anyio.sleep(pause)
            pause = min(pause * 2, 0.5)


_NOT_YET = object()


def _ended(record: JobRecord) -> Any:
    if record.state == "succeeded":
        return record.result
    if record.state == "dead":
        raise JobDead(record.id, record.error)
    if record.state == "cancelled":
        raise JobCancelled(record.error or f"job {record.id} was cancelled")
    return _NOT_YET


def _no_limit() -> anyio.CancelScope:
    return anyio.CancelScope()


class EnqueueFields:
    """``Store.enqueue`` for every store: the keyword form is checked into a :class:`NewJob`
    here, once, and the store adds it with its own ``_enqueue_one``."""

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
        """Add one job; its id (the existing job's id when *key* is already used)."""
        job = new_job(
            task,
            args,
            priority=priority,
            queue=queue,
            run_at=run_at,
            delay=delay,
            max_attempts=max_attempts,
            key=key,
        )
        return await self._enqueue_one(job)

    async def _enqueue_one(self, job: NewJob) -> int:
        raise NotImplementedError
