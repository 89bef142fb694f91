"""A SQLite store on a disk that is full, or read-only, for real (tests/test_store_disk.py).

Run as root inside a private mount namespace (``unshare --mount --propagation private``),
so that the small tmpfs it mounts is gone when it exits, whatever happens to it::

    python tests/_disk_scenarios.py SCENARIO FOLDER

It mounts a 1 MiB tmpfs on FOLDER, makes a store there with a few jobs, fills the disk (or
remounts it read-only), runs the ``asyncworkers`` commands and the read-only API on it, and
prints one JSON object: for each step, its exit status and output.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncworkers as aw

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str, store: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "asyncworkers", *args, "--store", store],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    return {"rc": done.returncode, "out": done.stdout, "err": done.stderr}


def fill(folder: Path) -> None:
    """Write zeros until the file system says there is no room left."""
    with (folder / "filler").open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    with (folder / "filler-small").open("wb", buffering=0) as f:  # the last partial block
        try:
            while True:
                f.write(b"\0")
        except OSError:
            pass


async def api(path: Path) -> dict[str, Any]:
    """The reading API on a read-only store, and a read-write store opened without a write."""
    out: dict[str, Any] = {}
    async with aw.store.SQLiteStore(path, read_only=True) as store:
        out["counts"] = await store.counts()
        out["dead"] = [r.id for r in await store.dead()]
        out["result"] = await store.result(1, timeout=5)
        try:
            await store.enqueue("echo")
        except aw.store.StoreError as exc:
            out["read_only_write"] = f"{type(exc).__name__}: {exc}"
    try:
        async with aw.store.SQLiteStore(path) as store:
            out["rw_counts"] = await store.counts()
            try:
                await store.enqueue("echo")
            except aw.store.StoreError as exc:
                out["rw_write"] = f"{type(exc).__name__}: {exc}"
    except aw.store.StoreError as exc:
        out["rw_open"] = f"{type(exc).__name__}: {exc}"
    return out


async def prepare(path: Path) -> None:
    async with aw.store.SQLiteStore(path) as store:
        first = await store.enqueue("echo", {"value": 1})
        claimed = await store.claim(None, 1, 30, "prep")
        assert claimed
        assert claimed[0].id == first
        await store.complete(first, claimed[0].token, '"one"')
        await store.enqueue("boom")
        (dead,) = await store.claim(None, 1, 30, "prep")
        await store.fail(dead.id, dead.token, "ValueError: boom", None)
        await store.enqueue("echo", {"value": 3})


def main(scenario: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], check=True)
    path = folder / "jobs.db"
    store = f"sqlite:///{path}"
    asyncio.run(prepare(path))
    holder = None
    if scenario == "full-held":  # a worker has the file open: its -shm index exists
        holder = sqlite3.connect(path)
        holder.execute("SELECT count(*) FROM aw_jobs").fetchone()
    if scenario.startswith("full"):
        fill(folder)
    elif scenario == "read-only":
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    report: dict[str, Any] = {
        "files": sorted(os.listdir(folder)),
        "status": cli("status", "--json", store=store),
        "enqueue": cli("enqueue", "echo", store=store),
        "retry": cli("retry", "2", store=store),
        "api": asyncio.run(api(path)),
    }
    if holder is None:  # with the file open elsewhere a worker starts, and waits for room
        report["worker"] = cli("worker", "--tasks", "tests._store_tasks:tasks", store=store)
    if holder is not None:
        holder.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
