"""The durable part of ``asyncworkers demo``: jobs enqueued into an embedded SQLite store in
a temporary folder, then processed from it by a Manager, with a check of each claim."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import asyncworkers as aw

__all__ = ["StoreDemoReport", "render_store_report", "run_store_demo"]

JOBS = 40
FLAKY_ATTEMPTS = 3

demo_tasks = aw.store.TaskRegistry()
_order: list[int] = []  # the order the jobs of priority_probe started in
_flaky_runs: list[int] = []


@demo_tasks.task("demo.resize")
async def resize(image: int) -> dict[str, int]:
    """Pretend I/O: 'resize' an image and report its new size."""
    await asyncio.sleep(0.002)
    return {"image": image, "width": 64}


@demo_tasks.task("demo.probe")
async def priority_probe(n: int) -> int:
    """Record when it started (to show priorities), return *n*."""
    _order.append(n)
    return n


@demo_tasks.task("demo.flaky", retry=aw.Retry(attempts=FLAKY_ATTEMPTS, backoff=0.01))
async def flaky() -> str:
    """Fail twice, then succeed: the retries go through the store with their backoff."""
    _flaky_runs.append(1)
    if len(_flaky_runs) < FLAKY_ATTEMPTS:
        raise ConnectionError(f"flaky upstream (run {len(_flaky_runs)})")
    return f"ok on attempt {len(_flaky_runs)}"


class StoreDemoReport:
    """What the store demo saw, and the checks of its claims."""

    def __init__(self) -> None:
        self.metrics: aw.store.ManagerMetrics | None = None
        self.checks: list[tuple[str, bool]] = []
        self.elapsed = 0.0

    @property
    def all_ok(self) -> bool:
        return all(ok for _, ok in self.checks)


async def run_store_demo(console: Console) -> StoreDemoReport:
    """Enqueue into a SQLite store in a temporary folder, process it, check the outcome."""
    _order.clear()
    _flaky_runs.clear()
    report = StoreDemoReport()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="asyncworkers-demo-") as folder:
        path = Path(folder) / "demo.db"
        console.print(f"[bold]durable jobs[/]: SQLite store {path}", highlight=False)
        async with aw.store.SQLiteStore(path) as store:
            jobs = [demo_tasks.job("demo.resize", {"image": i}) for i in range(JOBS)]
            jobs += [demo_tasks.job("demo.probe", {"n": p}, priority=p) for p in (0, 5, 9, 1)]
            ids = await store.enqueue_many(jobs)
            flaky_id = await demo_tasks.enqueue(store, "demo.flaky")
            # A row a worker cannot run (its task is unknown here): dead-lettered, never run.
            stray = await store.enqueue("demo.nobody-knows-me")
            manager = aw.store.Manager(store, demo_tasks, concurrency=1, poll_interval=0.05)
            async with manager:
                results = [await store.result(i, timeout=30) for i in ids[:JOBS]]
                flaky_result = await store.result(flaky_id, timeout=30)
                while (await store.counts())["dead"] < 1:
                    await asyncio.sleep(0.01)
            stray_row = await store.get(stray)
            report.metrics = manager.metrics()
    report.elapsed = time.monotonic() - started
    report.checks = [
        (
            f"store: {JOBS} jobs enqueued in one transaction all succeeded with their results",
            results == [{"image": i, "width": 64} for i in range(JOBS)],
        ),
        ("store: priorities 9, 5, 1, 0 ran highest first", _order == [9, 5, 1, 0]),
        (
            f"store: flaky succeeded on attempt {FLAKY_ATTEMPTS} after retries with backoff",
            flaky_result == f"ok on attempt {FLAKY_ATTEMPTS}",
        ),
        (
            "store: a row with an unknown task was dead-lettered, never run",
            stray_row is not None
            and stray_row.state == "dead"
            and "unknown task" in (stray_row.error or ""),
        ),
    ]
    return report


def render_store_report(report: StoreDemoReport, console: Console) -> None:
    """The store's counts and the Manager's metrics, then the checks."""
    table = Table(title="Durable jobs (SQLite)")
    names = ("claimed", "succeeded", "failed", "retried", "dead", "rejected")
    for name in names:
        table.add_column(name, justify="right")
    m = report.metrics
    table.add_row(*(str(getattr(m, name)) if m else "-" for name in names))
    console.print(table)
    for text, ok in report.checks:
        mark = "[green]ok  [/]" if ok else "[bold red]FAIL[/]"
        console.print(f"{mark} {text}", highlight=False)
    console.print(f"durable part done in {report.elapsed:.2f} s", highlight=False)
