"""A SQLite store on a full disk, on a read-only file system, and deleted under a running
worker (issue 17.3). The disks are real: a 1 MiB tmpfs mounted in a private mount namespace
(tests/_disk_scenarios.py), so that nothing is left mounted whatever happens."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

import asyncworkers as aw
from _store_support import PROCESS_GUARD, REPO, SQLiteFactory, Worker, query

SCENARIOS = Path(__file__).resolve().parent / "_disk_scenarios.py"
EXPECTED_COUNTS = {"queued": 1, "running": 0, "succeeded": 1, "dead": 1, "cancelled": 0}


def run_scenario(scenario: str, tmp_path: Path) -> dict[str, Any]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("this test mounts a small tmpfs: it needs root and unshare (CI runs as root)")
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private",
         sys.executable, str(SCENARIOS), scenario, str(tmp_path / "disk")],
        capture_output=True, text=True, cwd=REPO, timeout=PROCESS_GUARD * 3,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def assert_status_reads(report: dict[str, Any]) -> None:
    status = report["status"]
    assert status["rc"] == 0, status["err"]
    shown = json.loads(status["out"])
    assert shown["counts"] == EXPECTED_COUNTS
    assert [row["id"] for row in shown["dead"]] == [2]
    api = report["api"]
    assert api["counts"] == EXPECTED_COUNTS
    assert (api["dead"], api["result"]) == ([2], "one")
    assert "opened read-only" in api["read_only_write"]


def assert_one_line(step: dict[str, Any], rc: int, *words: str) -> None:
    assert step["rc"] == rc, step
    assert step["err"].count("\n") == 1, step["err"]  # one line, no traceback
    for word in words:
        assert word in step["err"]


@pytest.mark.parametrize("held", [False, True], ids=["closed", "held-open"])
def test_a_full_disk_reads_and_refuses_writes_in_one_line(tmp_path: Path, held: bool) -> None:
    """Full, with nobody holding the file (no -shm index yet: it cannot be made) or with a
    worker holding it open (the index exists; opening used to write user_version)."""
    report = run_scenario("full-held" if held else "full", tmp_path)
    assert_status_reads(report)
    assert_one_line(report["enqueue"], 1, "asyncworkers enqueue: error:", "the disk is full")
    assert_one_line(report["retry"], 1, "asyncworkers retry: error:", "the disk is full")
    if held:  # opening for writing writes nothing: reads work, the write says the disk is full
        assert report["api"]["rw_counts"] == EXPECTED_COUNTS
        assert report["api"]["rw_write"].startswith("StoreFull:")
    else:
        assert report["api"]["rw_open"].startswith("StoreFull:")
        assert_one_line(report["worker"], 1, "asyncworkers worker: error:", "the disk is full")


def test_a_read_only_file_system_reads_and_refuses_writes_in_one_line(tmp_path: Path) -> None:
    report = run_scenario("read-only", tmp_path)
    assert_status_reads(report)
    for command in ("enqueue", "retry", "worker"):
        assert_one_line(report[command], 2, f"asyncworkers {command}: error:", "read-only")


def test_read_only_store_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"

    async def open_missing() -> None:
        async with aw.store.SQLiteStore(missing, read_only=True):
            pass

    with pytest.raises(aw.store.StoreUnavailable, match="no such file"):
        anyio.run(open_missing)
    assert not missing.exists()  # a read-only open never creates the file
    with pytest.raises(TypeError, match="read_only"):
        aw.store.SQLiteStore(missing, read_only=1)  # type: ignore[arg-type]


def test_the_file_deleted_under_a_running_worker_stops_it(tmp_path: Path) -> None:
    """The worker would go on claiming from an unlinked file nobody else sees: it must stop,
    say why, and exit non-zero."""
    factory = SQLiteFactory(tmp_path)
    query(factory, lambda store: store.enqueue("echo", {"value": 1}))
    worker = Worker(factory.url, tmp_path / "worker.log", "--poll-interval", "0.1")
    try:
        worker.wait_ready()
        for leftover in tmp_path.glob("jobs.db*"):
            leftover.unlink()
        rc = worker.wait()
    finally:
        worker.stop()
    out = worker.output()
    assert rc != 0, out
    assert "was deleted or replaced while open" in out
    assert "asyncworkers worker: error:" in out
