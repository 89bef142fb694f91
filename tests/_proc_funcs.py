"""Module-level functions for the ``kind="process"`` tests.

A process job's function is pickled by reference (module and name), so its worker process
must be able to import it: these live in a module of their own, importable in the child
because anyio's worker starts with the parent's ``sys.path`` (where pytest put ``tests/``).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


class CustomError(Exception):
    """An exception type of the test suite's own, to see that the type comes back."""


def square(x: int) -> int:
    return x * x


def first(a: object, b: object) -> object:
    return a


def pid() -> int:
    return os.getpid()


def fail(message: str) -> None:
    raise CustomError(message)


def exit_hard(code: int) -> None:
    os._exit(code)  # no cleanup, no reply: the worker just vanishes


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def write_pid_then_sleep(path: str, seconds: float) -> str:
    """Tell the parent who we are, then be slow work that only a kill cuts short."""
    _write(Path(path), str(os.getpid()))
    time.sleep(seconds)
    return "slept"


def write_pid_then_wait_for(path: str, release: str, guard: float) -> str:
    """Tell the parent who we are, then wait (polling, with a bound) for its go-ahead file."""
    _write(Path(path), str(os.getpid()))
    deadline = time.monotonic() + guard
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            return "never released"
        time.sleep(0.005)
    return "released"


def rendezvous(directory: str, name: str, count: int, guard: float) -> bool:
    """Arrive (a file named *name*), then wait until *count* jobs have: True if they did."""
    _write(Path(directory) / name, str(os.getpid()))
    deadline = time.monotonic() + guard
    while len(list(Path(directory).glob("*.here"))) < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def touch(path: str) -> str:
    _write(Path(path), str(os.getpid()))
    return "touched"


def hold(seconds: float) -> tuple[float, float]:
    """Stand-in CPU work: when it ran, on the system-wide monotonic clock."""
    start = time.monotonic()
    time.sleep(seconds)
    return start, time.monotonic()


def _write(path: Path, text: str) -> None:
    # Write then rename, so that a reader never sees a half-written file.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class CustomBaseError(BaseException):
    """A BaseException of the user's own (not Exception, not a cancellation)."""


def raise_custom_base() -> None:
    raise CustomBaseError("out of band")


def system_exit(code: int) -> None:
    raise SystemExit(code)
