"""The task registry: which functions a worker may run for a job, and how.

A job row names its task by a string; the worker looks the name up here. Nothing else about
a job is code: its arguments are a JSON object passed as keyword arguments, and its result
must be JSON too.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from .._core._retry import Retry
from .._core._units import Kind
from ._errors import TaskExited
from ._fields import (
    MAX_ATTEMPTS,
    MAX_PRIORITY,
    MAX_TIME,
    MIN_PRIORITY,
    check_int,
    check_text,
    show,
)
from ._jobs import encode_args, new_job
from ._protocol import NewJob, Store
from ._schedule import Periodic, make_schedule, runs_after_downtime

__all__ = ["DEFAULT_RETRY", "TaskRegistry", "TaskSpec"]

F = TypeVar("F", bound=Callable[..., Any])

#: The retry policy of a task that names none: 3 attempts, 1 s then 2 s, 25 % jitter.
DEFAULT_RETRY = Retry(attempts=3, backoff=1.0, multiplier=2.0, max_backoff=300.0, jitter=0.25)

_KINDS = ("async", "thread", "process")


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One registered task: the function and the defaults of the jobs that name it."""

    name: str
    fn: Callable[..., Any]
    retry: Retry
    timeout: float | None
    kind: Kind | None
    priority: int
    queue: str
    signature: inspect.Signature | None  # None: a callable without one (nothing to check)
    call: Callable[..., Any]  # what the Manager runs: fn, with SystemExit made a failure
    periodic: Periodic | None = None  # its schedule, when workers enqueue it themselves

    def check_args(self, args: dict[str, Any] | None) -> None:
        """TypeError when *args* cannot be the keyword arguments of the function."""
        if self.signature is None:
            return
        try:
            self.signature.bind(**(args or {}))
        except TypeError as exc:
            raise TypeError(f"arguments {args!r} do not fit task {self.name!r}: {exc}") from None


class TaskRegistry:
    """The tasks a worker can run, by name.

    ::

        tasks = aw.store.TaskRegistry()

        @tasks.task("email.send", retry=aw.Retry(attempts=5, backoff=2.0), timeout=30)
        async def send(to: str, subject: str) -> dict[str, str]: ...

    The decorator returns the function unchanged. A coroutine function runs on the event
    loop, another callable in a thread (or ``kind="process"``), as on a Runtime.
    """

    def __init__(self) -> None:
        self._specs: dict[str, TaskSpec] = {}

    def task(
        self,
        name: str | None = None,
        *,
        retry: Retry | None = None,
        timeout: float | None = None,
        kind: Kind | None = None,
        priority: int = 0,
        queue: str = "default",
        schedule: str | float | timedelta | None = None,
        schedule_args: dict[str, Any] | None = None,
        catch_up: bool | int = False,
    ) -> Callable[[F], F]:
        """Register the decorated function as task *name* (default: its qualified name).

        :param retry: attempts and backoff (default :data:`DEFAULT_RETRY`); ``attempts`` is
            the ``max_attempts`` of new jobs; ``retry_on`` decides which errors go again
        :param timeout: seconds one attempt may run (None: no limit)
        :param kind: ``"async"``, ``"thread"`` or ``"process"`` (None: from the function)
        :param priority: the default priority of new jobs (higher runs first)
        :param queue: the default queue of new jobs
        :param schedule: make it periodic (see :meth:`periodic`): a cron expression (UTC),
            or an interval in seconds or as a ``timedelta``
        :param schedule_args: the arguments of each periodic run (default: none)
        :param catch_up: after a downtime, enqueue the missed runs too (True: up to
            1,000; an int: up to that many), not only the latest
        """
        _check_options(name, retry, timeout, kind, priority, queue)
        periodic = None
        if schedule is not None:
            periodic = Periodic(
                make_schedule(schedule),
                dict(schedule_args or {}),
                runs_after_downtime(catch_up),
            )
        elif schedule_args is not None or catch_up is not False:
            raise ValueError("schedule_args and catch_up need a schedule")

        def register(fn: F) -> F:
            if not callable(fn):
                raise TypeError(f"@task needs a callable, got {fn!r}")
            task_name = name if name is not None else _default_name(fn)
            check_text("task name", task_name)
            if periodic is not None:  # each run's idempotency key holds the name
                check_text(
                    f"the run keys of periodic task {show(task_name)}",
                    periodic.key(task_name, MAX_TIME + 0.5),  # as long as an instant gets
                )
            if task_name in self._specs and self._specs[task_name].fn is not fn:
                raise ValueError(f"task {task_name!r} is already registered")
            spec = TaskSpec(
                name=task_name,
                fn=fn,
                retry=retry if retry is not None else DEFAULT_RETRY,
                timeout=timeout,
                kind=kind,
                priority=priority,
                queue=queue,
                signature=_signature(fn),
                call=_guarded(fn, kind, task_name),
                periodic=periodic,
            )
            if periodic is not None:  # each run's arguments: checked now, not at each run
                encode_args(periodic.args, task=task_name)
                spec.check_args(periodic.args)
            self._specs[task_name] = spec
            return fn

        return register

    def periodic(
        self,
        schedule: str | float | timedelta,
        name: str | None = None,
        *,
        args: dict[str, Any] | None = None,
        catch_up: bool | int = False,
        retry: Retry | None = None,
        timeout: float | None = None,
        kind: Kind | None = None,
        priority: int = 0,
        queue: str = "default",
    ) -> Callable[[F], F]:
        """Register the decorated function as a task that workers enqueue on a schedule.

        ::

            @tasks.periodic("*/5 * * * *")            # cron, UTC: every 5 minutes
            async def report() -> None: ...

            @tasks.periodic(30, args={"depth": 2})   # every 30 s (at multiples of 30 s)
            async def sweep(depth: int) -> None: ...

        Every Manager whose registry has it enqueues each due run, and each run is enqueued
        once however many workers and hosts there are: the first worker to see the instant
        records it in the store in the same transaction as the job, and the job's
        idempotency key (``periodic:NAME:INSTANT``) names the instant. The first worker to
        start with a new schedule records its latest instant without running it; after a
        time with no worker up, only the latest missed run is enqueued, unless *catch_up*
        (True: the missed runs too, up to 1,000; an int: up to that many runs).
        The other options are :meth:`task`'s.
        """
        return self.task(
            name, retry=retry, timeout=timeout, kind=kind, priority=priority, queue=queue,
            schedule=schedule, schedule_args=args if args is not None else {},
            catch_up=catch_up,
        )  # fmt: skip

    def periodic_tasks(self) -> list[TaskSpec]:
        """The tasks with a schedule, by name."""
        return [spec for _, spec in sorted(self._specs.items()) if spec.periodic is not None]

    def get(self, name: str) -> TaskSpec | None:
        """The task registered as *name*, or None."""
        return self._specs.get(name)

    def __getitem__(self, name: str) -> TaskSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise KeyError(self._unknown(name)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._specs))

    def __len__(self) -> int:
        return len(self._specs)

    def job(
        self,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
        queue: str | None = None,
        run_at: float | None = None,
        delay: float | None = None,
        max_attempts: int | None = None,
        key: str | None = None,
    ) -> NewJob:
        """A checked job of task *name* with its defaults, for ``store.enqueue_many``.

        ValueError for a task that is not registered, TypeError for arguments that are not a
        JSON object or do not fit the function's signature.
        """
        spec = self.get(name)
        if spec is None:
            raise ValueError(self._unknown(name))
        spec.check_args(args)
        return new_job(
            name,
            args,
            priority=spec.priority if priority is None else priority,
            queue=spec.queue if queue is None else queue,
            run_at=run_at,
            delay=delay,
            max_attempts=spec.retry.attempts if max_attempts is None else max_attempts,
            key=key,
        )

    async def enqueue(
        self,
        store: Store,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
        queue: str | None = None,
        run_at: float | None = None,
        delay: float | None = None,
        max_attempts: int | None = None,
        key: str | None = None,
    ) -> int:
        """Enqueue a job of task *name* into *store* with the task's defaults; its id."""
        job = self.job(
            name,
            args,
            priority=priority,
            queue=queue,
            run_at=run_at,
            delay=delay,
            max_attempts=max_attempts,
            key=key,
        )
        (job_id,) = await store.enqueue_many([job])
        return job_id

    def _unknown(self, name: str) -> str:
        known = ", ".join(sorted(self._specs)) or "none"
        return f"task {name!r} is not registered (registered: {known})"

    def __repr__(self) -> str:
        return f"<TaskRegistry {sorted(self._specs)}>"


def _guarded(fn: Callable[..., Any], kind: Kind | None, name: str) -> Callable[..., Any]:
    """*fn*, with a SystemExit or KeyboardInterrupt it raises turned into :class:`TaskExited`.

    Such an exception would otherwise leave the Runtime's task group and end the worker
    process, making a job that calls ``sys.exit()`` a crash that takes its neighbours down
    too. Process tasks are left as they are (they run in a child, and must pickle by name);
    so is any callable whose kind cannot be told from its type.
    """
    if kind == "process":
        return fn
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except (SystemExit, KeyboardInterrupt) as exc:
                raise TaskExited(name, exc) from exc

        return run_async
    if inspect.isfunction(fn) or inspect.ismethod(fn):

        @functools.wraps(fn)
        def run_sync(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except (SystemExit, KeyboardInterrupt) as exc:
                raise TaskExited(name, exc) from exc

        return run_sync
    return fn


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have none
        return None


def _default_name(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}.{getattr(fn, '__qualname__', repr(fn))}"


def _check_options(
    name: str | None,
    retry: Retry | None,
    timeout: float | None,
    kind: Kind | None,
    priority: int,
    queue: str,
) -> None:
    if name is not None:
        check_text("task name", name)
    if retry is not None and not isinstance(retry, Retry):
        raise TypeError(f"retry must be an aw.Retry, got {retry!r}")
    if retry is not None:  # its attempts become each job's max_attempts
        check_int("retry.attempts", retry.attempts, 1, MAX_ATTEMPTS)
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
    if kind is not None and kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    # the job defaults: refused here, not at each enqueue (the ranges of store._fields)
    check_int("priority", priority, MIN_PRIORITY, MAX_PRIORITY)
    check_text("queue", queue)
