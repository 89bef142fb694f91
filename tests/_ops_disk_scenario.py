"""A worker with its endpoint on a SQLite store whose disk fills up under running jobs
(tests/test_ops_db_away.py). Run as root in a private mount namespace::

    unshare --mount --propagation private python tests/_ops_disk_scenario.py DISK MARKS

It mounts a small tmpfs on DISK, puts a store there with three jobs that hold until a
release file (in MARKS, on the normal disk) exists, starts ``asyncworkers worker --http``,
fills the disk while the jobs run, releases them (their outcomes cannot be written), frees
the disk, and prints one JSON object: what /readyz said while the disk was full, the final
counts, the jobs' runs, /metrics' lease losses, and the worker's output.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import asyncworkers as aw

REPO = Path(__file__).resolve().parent.parent
GUARD = 90.0
JOBS = 3


def wait(what: str, check: Any) -> Any:
    deadline = time.monotonic() + GUARD
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"still waiting for {what}")


def http(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=GUARD) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def fill(folder: Path) -> None:
    for name, step in (("filler", 4096), ("filler-small", 1)):
        with (folder / name).open("wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * step)
            except OSError:
                pass


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def fill_store(db: Path, marks: Path, release: Path) -> None:
    from _ops_tasks import tasks

    async with aw.store.SQLiteStore(db) as store:
        for tag in range(JOBS):
            args = {"path": str(marks), "release": str(release), "tag": tag}
            await tasks.enqueue(store, "tagged_hold", args)


async def counts(db: Path) -> dict[str, int]:
    async with aw.store.SQLiteStore(db, read_only=True) as store:
        return {str(k): v for k, v in (await store.counts()).items()}


def main(disk: Path, work: Path) -> None:
    disk.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True)
    db, marks, release, log = disk / "jobs.db", work / "marks", work / "release", work / "log"
    aw.run(fill_store, db, marks, release)
    with log.open("w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "asyncworkers", "worker", "--store", f"sqlite:///{db}",
             "--tasks", "tests._ops_tasks:tasks", "--http", "127.0.0.1:0",
             "--poll-interval", "0.1", "--store-refresh", "0.1"],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = wait("the endpoint", lambda: re.search(r", http (http://\S+)", log.read_text()))
        base = url.group(1)
        wait("the jobs to run", lambda: len(lines(marks)) == JOBS)
        fill(disk)
        release.touch()  # the jobs end; their outcomes meet a full disk
        wait("the worker to say so", lambda: "write failed (StoreFull" in log.read_text())
        readyz = wait("/readyz to say so", lambda: (r := http(base + "/readyz"))[0] == 503 and r)
        (disk / "filler").unlink()
        (disk / "filler-small").unlink()
        wait("every job to succeed", lambda: aw.run(counts, db)["succeeded"] == JOBS)
        metrics = http(base + "/metrics")[1]
        worker.terminate()
        rc = worker.wait(timeout=GUARD)
    finally:
        if worker.poll() is None:
            worker.kill()
    print(json.dumps({
        "readyz_while_full": readyz, "counts": aw.run(counts, db), "runs": lines(marks),
        "lease_losses": re.findall(r"^asyncworkers_lease_losses_total (\S+)", metrics, re.M),
        "rc": rc, "log": log.read_text(),
    }))  # fmt: skip


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main(Path(sys.argv[1]), Path(sys.argv[2]))
