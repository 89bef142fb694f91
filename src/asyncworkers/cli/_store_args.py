"""What the store commands share: ``--store``, ``--tasks``, and running a store call.

Mistakes the parser can see (a URL of no known kind, a ``--tasks`` that does not import)
fail in the parser: one ``error: argument --store: ...`` line and exit status 2. A store that
cannot be opened fails the same way, from :func:`run_with_store`.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import re
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncworkers as aw
from asyncworkers.store._fields import MAX_ATTEMPTS, MAX_ID, MAX_PRIORITY, MIN_PRIORITY, check_text

__all__ = [
    "STORE_ENV",
    "add_store_option",
    "age",
    "count",
    "fail",
    "job_id",
    "max_attempts",
    "positive_seconds",
    "priority",
    "run_with_store",
    "seconds",
    "store_text",
    "store_url",
    "task_registry",
]

T = TypeVar("T")

#: The environment variable that names the store when ``--store`` is not given.
STORE_ENV = "ASYNCWORKERS_STORE"


def seconds(text: str) -> float:
    """A number of seconds >= 0."""
    return _seconds(text, allow_zero=True)


def positive_seconds(text: str) -> float:
    """A number of seconds > 0."""
    return _seconds(text, allow_zero=False)


_AGE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|m|h|d|w)?\s*$")
_AGE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0, None: 1.0}


def age(text: str) -> float:
    """A length of time > 0 in seconds: ``90``, ``90s``, ``15m``, ``12h``, ``7d``, ``2w``."""
    match = _AGE.match(text)
    seconds = 0.0 if match is None else float(match.group(1)) * _AGE_UNITS[match.group(2)]
    if not (seconds > 0 and math.isfinite(seconds)):
        raise argparse.ArgumentTypeError(
            f"expected a time > 0 such as 90s, 15m, 12h or 7d, got {text!r}"
        )
    return seconds


def _seconds(text: str, *, allow_zero: bool) -> float:
    bound = ">= 0" if allow_zero else "> 0"
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isnan(value) or math.isinf(value) or value < 0 or (value == 0 and not allow_zero):
        raise argparse.ArgumentTypeError(f"expected seconds {bound}, got {text!r}")
    return value


def _whole_number(text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from {low} to {high}, got {text!r}"
        )
    return value


# The ranges every store holds (store._fields; docs/store.md "Accepted values"), checked in
# the parser so that the option is named and no store is opened for a value it would refuse.


def priority(text: str) -> int:
    """A job priority: a 32-bit signed whole number."""
    return _whole_number(text, MIN_PRIORITY, MAX_PRIORITY)


def max_attempts(text: str) -> int:
    """A job's attempts: 1 to 2**31 - 1."""
    return _whole_number(text, 1, MAX_ATTEMPTS)


def job_id(text: str) -> int:
    """A job id: 1 to 2**63 - 1."""
    return _whole_number(text, 1, MAX_ID)


def count(text: str) -> int:
    """How many rows to show: 1 to 2**63 - 1."""
    return _whole_number(text, 1, MAX_ID)


def store_text(text: str) -> str:
    """A task, queue or key that every store can hold (no NUL, no lone surrogate, ...)."""
    try:
        return check_text("the value", text)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def store_url(text: str) -> str:
    """A store URL of a kind asyncworkers knows (checked here, opened later)."""
    try:
        aw.store.open_store(text)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def task_registry(text: str) -> aw.store.TaskRegistry:
    """``module:attribute`` naming a :class:`~asyncworkers.store.TaskRegistry`, imported."""
    module_name, sep, attribute = text.partition(":")
    if not sep or not module_name or not attribute:
        raise argparse.ArgumentTypeError(f"expected module:registry, got {text!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:  # as `python -m` would have it
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a bad module raises anything; report it, do not crash
        raise argparse.ArgumentTypeError(
            f"cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    registry = getattr(module, attribute, None)
    if not isinstance(registry, aw.store.TaskRegistry):
        found = "nothing" if registry is None else type(registry).__name__
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an aw.store.TaskRegistry (found {found})"
        )
    return registry


def add_store_option(parser: argparse.ArgumentParser) -> None:
    """``--store URL``, defaulting to ``$ASYNCWORKERS_STORE`` or the SQLite file."""
    default = os.environ.get(STORE_ENV) or aw.store.DEFAULT_URL
    parser.add_argument(
        "--store",
        type=store_url,
        default=default,
        metavar="URL",
        help=(
            "sqlite:///path.db or postgresql://user@host:port/db "
            f"(default: ${STORE_ENV} or {aw.store.DEFAULT_URL}; now {default})"
        ),
    )


def fail(command: str, message: str) -> int:
    """Print ``asyncworkers COMMAND: error: MESSAGE`` on one line; exit status 2."""
    print(f"asyncworkers {command}: error: {message}", file=sys.stderr)
    return 2


def run_with_store(
    command: str,
    url: str,
    body: Callable[[aw.store.Store], Awaitable[T]],
    *,
    opened: bool = True,
    read_only: bool = False,
) -> T | int:
    """Open the store at *url* (unless *opened* is False: *body* opens it), run *body* with
    it, close it. Errors are one line: 2 on a store that cannot be opened or a bad value
    found on the way, 1 when the store failed the call (a full disk, say).

    *read_only*: the command only looks, so it opens the store read-only and works on a
    full disk or a file nobody may write.
    """

    async def main() -> T:
        store = aw.store.open_store(url, read_only=read_only)
        if opened:
            await store.open()
        try:
            return await body(store)
        finally:
            await store.close()

    try:
        return aw.run(main)
    except aw.store.StoreUnavailable as exc:
        return fail(command, f"--store {url}: {exc}")
    except (ValueError, TypeError) as exc:
        return fail(command, str(exc))
    except aw.store.StoreError as exc:  # the store failed the call: no traceback, exit 1
        print(f"asyncworkers {command}: error: {exc}", file=sys.stderr)
        return 1
