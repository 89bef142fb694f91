"""One process's HTTP side: its aiohttp session and the tasks ``dispatch()`` runs.

In the open model a task sends one request (each has its intended send time); in the closed
model a task is a user that sends requests back to back. Neither raises for a failed
request: a refused or timed-out connection is one more counted outcome (its status code, or
the kind of error as a string) and the run goes on. Cancellation is never
caught. The path is kept short: the URL is parsed once, and options that are not set are not
passed.

Bodies are never held: each is read chunk by chunk as it arrives, its bytes counted and
dropped, so memory does not depend on what a server sends (aiohttp's reader stops reading
the socket while its buffer is full, so one connection holds at most a few of its chunks).
A body over ``max_body`` bytes ends as ``body_too_large`` with its connection dropped; one
that never ends runs into the session's total timeout. Bodies are not decompressed
(``auto_decompress=False``): a small compressed body cannot grow into a huge one in memory,
and the bytes counted are the bytes that crossed the wire (de-chunked).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from yarl import URL

from ._config import LoadConfig
from ._recorder import Recorder

__all__ = [
    "BODY_TOO_LARGE",
    "Budget",
    "ensure_open_files",
    "error_kind",
    "make_request",
    "make_user",
    "open_session",
]

# File descriptors a process needs besides its connections (stdio, the loop, pipes, ...).
SPARE_FILES = 64

# The outcome of a response whose body went over max_body.
BODY_TOO_LARGE = "body_too_large"

RequestTask = Callable[[int, Any, Any, dict[str, Any]], Awaitable[int | str]]
UserTask = Callable[[int, Any, Any, dict[str, Any]], Awaitable[None]]


def error_kind(exc: BaseException) -> str:
    """The report's name for a failed request: ``connect``, ``timeout`` or ``other``."""
    if isinstance(exc, TimeoutError):  # aiohttp's own timeouts derive from it too
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect"
    return "other"


def ensure_open_files(connections: int) -> None:
    """Make room for *connections* sockets under the open-file limit, raising the soft
    limit up to the hard one if needed; ValueError when even the hard limit is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = connections + SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise ValueError(
                f"concurrency {connections} needs {needed} open files, but the hard limit "
                f"is {hard} (ulimit -Hn)"
            )
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        except (ValueError, OSError) as exc:
            raise ValueError(
                f"concurrency {connections} needs {needed} open files, more than this "
                f"system allows ({exc})"
            ) from None


def open_session(config: LoadConfig) -> aiohttp.ClientSession:
    """The process's one session: at most ``concurrency`` connections, kept alive."""
    connector = aiohttp.TCPConnector(limit=config.concurrency, limit_per_host=0)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=config.timeout),  # the body's reads included
        headers=dict(config.headers),
        auto_decompress=False,  # see the module docstring
    )


async def _discard_body(
    response: aiohttp.ClientResponse, max_body: int, recorder: Recorder
) -> int | str:
    """Read the body to its end, counting its bytes into *recorder* as they come; the
    status code, or BODY_TOO_LARGE (and the connection dropped) past *max_body* bytes."""
    readany = response.content.readany
    size = 0
    while chunk := await readany():
        size += len(chunk)
        recorder.body_bytes += len(chunk)
        if size > max_body:
            response.close()  # never back into the pool: the rest of the body is unread
            return BODY_TOO_LARGE
    return response.status


def make_request(
    session: aiohttp.ClientSession, config: LoadConfig, recorder: Recorder
) -> RequestTask:
    """The open model's dispatch task: ``task(id, config, task, metadata)`` sends one
    request and returns its status code, or the error kind (its times are in the log);
    it counts the send in ``recorder.sent``."""
    request, method, url, body = session.request, config.method, URL(config.url), config.body
    max_body = config.max_body

    async def send(task_id: int, cfg: Any, task: Any, metadata: dict[str, Any]) -> int | str:
        recorder.sent += 1
        try:
            async with request(method, url, data=body) as response:
                return await _discard_body(response, max_body, recorder)
        except Exception as exc:  # a failed request is an outcome; cancellation is not
            return error_kind(exc)

    return send


class Budget:
    """What the closed model's users share: the requests left to send (``left``, counting
    down; negative when there is no limit), and the deadline (unix time)."""

    __slots__ = ("_requests", "deadline", "left")

    def __init__(self, requests: int | None, seconds: float | None) -> None:
        self.left = requests if requests is not None else -1
        self.deadline = time.time() + seconds if seconds is not None else float("inf")
        self._requests = requests

    @property
    def sent(self) -> int:
        """How many requests were taken from the budget (sent, or being sent)."""
        if self._requests is None:
            return -1 - self.left
        return self._requests - self.left


def make_user(
    session: aiohttp.ClientSession, config: LoadConfig, budget: Budget, recorder: Recorder
) -> UserTask:
    """The closed model's dispatch task: one user, sending requests back to back on its
    connection until the budget is spent, recording each into *recorder*.

    Dispatching each request as a task of its own costs the dispatcher's per-task work (a
    job, a log row, the callbacks) on every request; one task per connection pays it once,
    which is what keeps the closed model as fast as a hand-written loop (see
    benchmarks/loadgen.py, which measures both shapes).
    """
    request, method, url, body = session.request, config.method, URL(config.url), config.body
    record, now, max_body = recorder.record, time.time, config.max_body

    async def user(task_id: int, cfg: Any, task: Any, metadata: dict[str, Any]) -> None:
        outcome: int | str
        while True:
            started = now()
            if budget.left == 0 or started >= budget.deadline:
                return
            budget.left -= 1
            try:
                async with request(method, url, data=body) as response:
                    outcome = await _discard_body(response, max_body, recorder)
            except Exception as exc:  # a failed request is an outcome; cancellation is not
                outcome = error_kind(exc)
            record(outcome, started, now(), None)

    return user
