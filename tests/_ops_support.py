"""A worker process with its operations endpoint, and the test's side of the endpoint.

``ops_worker(url, tmp_path, *options)`` starts ``python -m asyncworkers worker --http
127.0.0.1:0`` (a free port: the worker prints the address it got) with the tasks of
``tests/_ops_tasks.py``; ``get(url)`` reads an endpoint with aiohttp's client.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from _store_support import PROCESS_GUARD, REPO, wait_until

TASKS = "tests._ops_tasks:tasks"


class OpsWorker:
    """``asyncworkers worker --http`` in a subprocess, its output in a file."""

    def __init__(self, store_url: str, log: Path, *options: str) -> None:
        self.log = log
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("ASYNCWORKERS_HTTP_TOKEN", None)
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "asyncworkers", "worker", "--store", store_url,
                 "--tasks", TASKS, "--http", "127.0.0.1:0", "--poll-interval", "0.1",
                 "--store-refresh", "0.1",
                 *options],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env,
            )  # fmt: skip
        self.url = self._wait_url()

    def output(self) -> str:
        return self.log.read_text()

    def _wait_url(self) -> str:
        def found() -> str | None:
            match = re.search(r", http (http://\S+)", self.output())
            if match:
                return match.group(1)
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited before it served:\n{self.output()}")
            return None

        url: str = wait_until("the worker to serve HTTP", found)
        return url

    def stop(self) -> int:
        """SIGTERM, then wait for the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self) -> int:
        """Wait for the exit status (after a signal sent before)."""
        try:
            return self.proc.wait(timeout=PROCESS_GUARD)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"worker did not exit:\n{self.output()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def ops_worker(store_url: str, tmp_path: Path, *options: str) -> Iterator[OpsWorker]:
    worker = OpsWorker(store_url, tmp_path / "worker.log", *options)
    try:
        yield worker
    finally:
        worker.kill()


def get(url: str, **kwargs: Any) -> tuple[int, str, dict[str, str]]:
    """GET *url* with aiohttp's client, from sync code: status, text, headers."""
    return request("GET", url, **kwargs)


def request(method: str, url: str, **kwargs: Any) -> tuple[int, str, dict[str, str]]:
    async def main() -> tuple[int, str, dict[str, str]]:
        timeout = aiohttp.ClientTimeout(total=PROCESS_GUARD)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, url, **kwargs) as response,
        ):
            return response.status, await response.text(), dict(response.headers)

    return anyio.run(main)


def poll_until(what: str, url: str, check: Callable[[int, str], bool]) -> tuple[int, str]:
    """GET *url* until ``check(status, text)``; the last answer."""

    def once() -> tuple[int, str] | None:
        status, text, _ = get(url)
        return (status, text) if check(status, text) else None

    answer: tuple[int, str] = wait_until(what, once)
    return answer
