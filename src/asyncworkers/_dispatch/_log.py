"""One task's log row, and the rule that says whether a task failed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TaskLog", "http_status", "is_failure"]

# Result types that are never an HTTP response: no attribute lookup for them.
_PLAIN = frozenset((bool, int, float, str, bytes, list, dict, tuple, type(None)))


@dataclass(slots=True)
class TaskLog:
    """What happened to one dispatched task. Times are unix times (``time.time()``).

    ``intended_at`` is when the schedule wanted the task to start (open model only; None in
    the closed model). ``started_at`` and ``ended_at`` are when the function itself began
    and returned (None for a task cancelled before it started); ``duration`` is their
    difference. ``result`` is the function's return value or exception, as replaced by the
    callbacks; ``ok`` is False when it counts as failed (see :func:`is_failure`);
    ``metadata`` is the dict the function was given to fill.
    """

    task_id: int
    intended_at: float | None
    started_at: float | None
    ended_at: float | None
    duration: float | None
    result: Any
    ok: bool
    metadata: dict[str, Any] = field(default_factory=dict)


def is_failure(result: object) -> bool:
    """True for ``False``, an exception, or an HTTP response whose status is 400 or more
    (see :func:`http_status`)."""
    if type(result) in _PLAIN:  # the common results, at the cost of one lookup
        return result is False
    if isinstance(result, BaseException):
        return True
    status = http_status(result)
    return status is not None and status >= 400


def http_status(result: object) -> int | None:
    """The status of an HTTP response: an int ``status`` (aiohttp) or ``status_code``
    (requests, httpx) attribute; None for anything else, or one that cannot be read."""
    try:
        status = getattr(result, "status", None)
        if not isinstance(status, int) or isinstance(status, bool):
            status = getattr(result, "status_code", None)
    except Exception:  # a property that raises: not a response this rule knows
        return None
    return status if isinstance(status, int) and not isinstance(status, bool) else None
