"""One process's HTTP side: its aiohttp session and the task that sends one request.

The task is what ``dispatch()`` runs for every request. It returns the status code, or the
kind of error as a string, and never raises for a failed request, so that a refused or
timed-out connection is one more counted outcome and the run goes on. Cancellation is never
caught. The path is kept short: the URL is parsed once, and options that are not set are not
passed.
"""

from __future__ import annotations

import resource
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from yarl import URL

from ._config import LoadConfig

__all__ = ["ensure_open_files", "error_kind", "make_request", "open_session"]

# File descriptors a process needs besides its connections (stdio, the loop, pipes, ...).
SPARE_FILES = 64

RequestTask = Callable[[int, Any, Any, dict[str, Any]], Awaitable[int | str]]


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
        timeout=aiohttp.ClientTimeout(total=config.timeout),
        headers=dict(config.headers),
    )


def make_request(session: aiohttp.ClientSession, config: LoadConfig) -> RequestTask:
    """The dispatch task: ``task(id, config, task, metadata)`` sends one request and
    returns its status code, or the error kind."""
    request = session.request
    method = config.method
    url = URL(config.url)
    body = config.body

    if body is None:

        async def send(task_id: int, cfg: Any, task: Any, metadata: dict[str, Any]) -> int | str:
            try:
                async with request(method, url) as response:
                    await response.read()
                    return response.status
            except Exception as exc:  # a failed request is an outcome; cancellation is not
                return error_kind(exc)

        return send

    async def send_body(task_id: int, cfg: Any, task: Any, metadata: dict[str, Any]) -> int | str:
        try:
            async with request(method, url, data=body) as response:
                await response.read()
                return response.status
        except Exception as exc:
            return error_kind(exc)

    return send_body
