"""The load generator tests' server: ``tests/_loadgen_server.py`` in a subprocess.

The fixture reads the server's ``listening on PORT`` line, so a test starts once the server
accepts connections (no sleeping), and closes its stdin at the end, which stops it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

SERVER = Path(__file__).with_name("_loadgen_server.py")
# Bounds a wait that would otherwise never end; never an assertion about speed.
HANG_GUARD = 60.0


@contextmanager
def serving(launcher: Sequence[str] = (), address: str = "127.0.0.1") -> Iterator[str]:
    """Run the test server on *address*; yields its base URL, ``http://ADDRESS:PORT``.
    *launcher* goes before the command (``ip netns exec NS``: a host of tests/_hosts.py)."""
    proc = subprocess.Popen(
        [*launcher, sys.executable, str(SERVER), address],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until it listens (or dies: then "")
        assert line.startswith("listening on "), f"test server did not start: {line!r}"
        yield f"http://{address}:{int(line.split()[-1])}"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=HANG_GUARD)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The base URL of a test server shared by a module's tests."""
    with serving() as url:
        yield url


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A URL on 127.0.0.1 whose port refuses connections: bound, never listening (the
    port stays ours, so nobody else can start listening on it meanwhile)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"


def cli_env() -> dict[str, str]:
    """The environment of a ``python -m asyncworkers`` subprocess: piped, no colour."""
    return {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}
