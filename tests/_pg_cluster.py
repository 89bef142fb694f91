"""A private PostgreSQL server for the tests that stop, restart or move one.

The shared server at 127.0.0.1:5432 serves every other test (and other suites on this
machine), so a test must never restart it. A test that needs a server it may restart, cut
off or bind to another address (a network namespace's bridge) starts one of its own with
:func:`private_cluster`: ``initdb`` into a temporary folder, its own port, trust auth, and
``pg_ctl`` to start, stop and restart it. It runs as the ``postgres`` user when the tests
run as root (``initdb`` refuses root).

A test that needs this FAILS (never skips) when PostgreSQL's server binaries are missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_PG_ROOT = Path("/usr/lib/postgresql")


def _bin_dir() -> Path:
    versions = sorted(
        (p for p in _PG_ROOT.glob("*/bin") if (p / "pg_ctl").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not versions:
        pytest.fail(
            f"no PostgreSQL server binaries under {_PG_ROOT}: this test starts a private "
            "server (apt-get install postgresql)",
            pytrace=False,
        )
    return versions[-1]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _as_postgres(cmd: list[str]) -> list[str]:
    """Run *cmd* as the postgres user when we are root (initdb and postgres refuse root)."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@dataclass
class PrivateCluster:
    """One private PostgreSQL server: its data folder, address and ``pg_ctl`` controls."""

    data: Path
    host: str
    port: int
    bin: Path

    @property
    def dsn(self) -> str:
        """The DSN of its ``postgres`` database (user postgres, trust auth)."""
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def _ctl(self, *args: str, timeout: float = 60) -> None:
        cmd = _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", *args])
        subprocess.run(cmd, check=True, timeout=timeout, capture_output=True)

    def start(self) -> None:
        options = f"-c listen_addresses={self.host} -p {self.port} -k {self.data}"
        self._ctl("-o", options, "-l", str(self.data / "server.log"), "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def running(self) -> bool:
        cmd = _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "status"])
        return subprocess.run(cmd, capture_output=True).returncode == 0

    def log(self) -> str:
        path = self.data / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def private_cluster(
    host: str = "127.0.0.1", port: int | None = None, clients: str | None = None
) -> Iterator[PrivateCluster]:
    """Make, start and (always) stop and delete a private PostgreSQL server on *host*.

    *clients*: a network (``10.213.0.0/24``) whose hosts may connect too, without a password
    (initdb trusts only local and loopback connections)."""
    bin_dir = _bin_dir()
    root = Path(tempfile.mkdtemp(prefix="aw-pg-"))
    data = root / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
    init = _as_postgres(
        [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]
    )
    subprocess.run(init, check=True, timeout=120, capture_output=True)
    with (data / "postgresql.conf").open("a") as conf:
        # a test server: fast to start and stop; nothing here must survive a power cut
        conf.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
    if clients is not None:
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {clients} trust\n")
    cluster = PrivateCluster(data, host, port or free_port(host), bin_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            if cluster.running():
                cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
