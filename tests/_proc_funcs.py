"""Module-level functions for the ``kind="process"`` tests.

A process job's function is pickled by reference (module and name), so its worker process
must be able to import it: these live in a module of their own, importable in the child
because anyio's worker starts with the parent's ``sys.path`` (where pytest put ``tests/``).

A child tells the test that it runs, and who it is, by calling the test's listener on
127.0.0.1 (``call_then_*``), and may then wait on that line for the test's go-ahead: the
test waits for events, never polls.
"""

from __future__ import annotations

import os
import signal
import socket
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


def call_then_sleep(port: int, seconds: float) -> str:
    """Tell the test who we are, then be slow work that only a kill cuts short."""
    _call(port).close()
    time.sleep(seconds)
    return "slept"


def call_then_wait(port: int, guard: float) -> str:
    """Tell the test who we are, then wait (at most *guard* seconds) for its go-ahead."""
    with _call(port) as line:
        line.settimeout(guard)
        try:
            reply = line.recv(16)
        except TimeoutError:
            return "never released"
    return "released" if reply == b"go" else f"unexpected reply {reply!r}"


def _call(port: int) -> socket.socket:
    """Connect to the test's listener on 127.0.0.1:*port* and send our pid (one line)."""
    line = socket.create_connection(("127.0.0.1", port))
    line.sendall(f"{os.getpid()}\n".encode())
    return line


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
