"""Checking a dispatch() call: every mistake is a TypeError or ValueError at the call."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncworkers as aw

from ._calls import Kind, resolve_kind
from ._schedule import checked_offsets, rate_offsets

__all__ = ["Plan", "make_plan"]


@dataclass(slots=True)
class Plan:
    """A checked dispatch() call."""

    function: Callable[..., Any]
    tasks: list[Any] | int
    config: Any
    workers: int
    offsets: Iterator[float] | None  # None: the closed model
    duration: float | None
    kind: Kind
    on_done: Callable[..., Any] | None
    on_all_done: Callable[..., Any] | None
    progress: bool
    runtime: aw.Runtime | None
    record: bool

    @property
    def total(self) -> int:
        return self.tasks if isinstance(self.tasks, int) else len(self.tasks)

    def task(self, index: int) -> Any:
        return None if isinstance(self.tasks, int) else self.tasks[index]


def make_plan(
    function: object,
    tasks: object,
    *,
    config: Any,
    workers: object,
    rate: object,
    start_times: object,
    duration: object,
    kind: object,
    on_done: object,
    on_all_done: object,
    progress: object,
    runtime: object,
    record: object,
) -> Plan:
    if not callable(function):
        raise TypeError(f"function must be callable, got {function!r}")
    if isinstance(tasks, bool) or not isinstance(tasks, list | int):
        raise TypeError(f"tasks must be a list or an int (a count), got {type(tasks).__name__}")
    if isinstance(tasks, int) and tasks < 0:
        raise ValueError(f"tasks must be >= 0 when it is a count, got {tasks}")
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"workers must be an int, got {workers!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    for name, value in (("on_done", on_done), ("on_all_done", on_all_done)):
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be callable or None, got {value!r}")
    for name, value in (("progress", progress), ("record", record)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, got {value!r}")
    if runtime is not None and not isinstance(runtime, aw.Runtime):
        raise TypeError(f"runtime must be an asyncworkers.Runtime or None, got {runtime!r}")
    if on_all_done is not None and not record:
        raise ValueError("on_all_done needs the logs: it cannot be used with record=False")
    total = tasks if isinstance(tasks, int) else len(tasks)
    return Plan(
        function=function,
        tasks=tasks,
        config=config,
        workers=workers,
        offsets=_offsets(rate, start_times, total),
        duration=None if duration is None else _positive("duration", duration),
        kind=resolve_kind(function, kind),
        on_done=on_done,  # type: ignore[arg-type]
        on_all_done=on_all_done,  # type: ignore[arg-type]
        progress=progress,  # type: ignore[arg-type]
        runtime=runtime,
        record=record,  # type: ignore[arg-type]
    )


def _offsets(rate: object, start_times: object, total: int) -> Iterator[float] | None:
    if rate is not None and start_times is not None:
        raise ValueError("give rate or start_times, not both (both pace the open model)")
    if rate is not None:
        return rate_offsets(_positive("rate", rate))
    if start_times is not None:
        return checked_offsets(start_times, total)  # type: ignore[arg-type]
    return None


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)
