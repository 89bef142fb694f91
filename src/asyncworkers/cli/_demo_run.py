"""``asyncworkers demo``: a mixed workload on a :class:`~asyncworkers.Runtime`, with live
progress, the notable jobs and the metrics, and a check of every claim it makes."""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import asyncworkers as aw

from ._demo_dispatch import DispatchDemo, dispatch_checks, dispatch_table, run_dispatch_demo
from ._demo_tasks import blocking_poll, crunch, flaky_fetch, io_call, sleep_forever
from ._store_demo import render_store_report, run_store_demo

__all__ = ["DemoConfig", "DemoReport", "run_command", "run_demo"]

T = TypeVar("T")

# The process jobs' work, and what it must add up to (the sum of i*i for i < n).
CRUNCH_N = 300_000
CRUNCH_SUM = (CRUNCH_N - 1) * CRUNCH_N * (2 * CRUNCH_N - 1) // 6
# The timed-out job's limit and the flaky job's attempts, in seconds and counts.
TIMEOUT_S = 0.2
FLAKY_ATTEMPTS = 3
# How long the jobs that get cancelled run before the demo cancels them.
CANCEL_AFTER_S = 0.2


# -- the command (its parser is in _demo) ------------------------------------------------


def run_command(args: argparse.Namespace) -> int:
    """``asyncworkers demo``: run the demo, print its report; the exit status."""
    console = Console()
    config = DemoConfig(jobs=args.jobs, workers=args.workers, seed=args.seed)
    report = aw.run(run_demo, config, console)  # on uvloop when it is installed
    render_report(report, console)
    stored = aw.run(run_store_demo, console)  # the durable part: a SQLite store
    render_store_report(stored, console)
    return 0 if report.all_ok and stored.all_ok else 1


# -- the demo ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoConfig:
    """How big the demo is: I/O jobs, concurrent workers, and the seed of job durations."""

    jobs: int = 120
    workers: int = 8
    seed: int = 1


@dataclass
class Specials:
    """The jobs the demo points at: cancelled ones, the retried one, the timed-out one."""

    token: aw.CancellationToken
    by_token: aw.Job[None]
    thread_by_token: aw.Job[int]
    by_cancel: aw.Job[None]
    flaky: aw.Job[str]
    timed_out: aw.Job[None]

    def cancelled(self) -> list[aw.Job[Any]]:
        """The three jobs that the demo cancels while they run."""
        return [self.by_token, self.thread_by_token, self.by_cancel]


@dataclass
class Workload:
    """Every job the demo submitted, by group."""

    low: list[aw.Job[float]]
    normal: list[aw.Job[float]]
    high: list[aw.Job[float]]
    blocking: list[aw.Job[int]]
    cpu: list[aw.Job[int]]
    specials: Specials

    def total(self) -> int:
        """How many jobs there are."""
        plain = self.low + self.normal + self.high + self.blocking + self.cpu
        return len(plain) + 5


@dataclass
class DemoReport:
    """What the demo saw: the jobs, the final metrics and the checks of its claims."""

    workload: Workload
    metrics: aw.Metrics
    loop: str
    elapsed: float
    checks: list[tuple[str, bool]] = field(default_factory=list)
    dispatch: DispatchDemo | None = None

    @property
    def all_ok(self) -> bool:
        """True when every check passed."""
        return all(ok for _, ok in self.checks)


async def run_demo(config: DemoConfig, console: Console) -> DemoReport:
    """Run the demo workload on a Runtime, with live progress on *console*."""
    started = time.monotonic()
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    console.print(
        f"[bold]asyncworkers demo[/]: {config.jobs} I/O jobs and more, "
        f"{config.workers} workers, {loop} loop",
        highlight=False,
    )
    async with aw.Runtime(workers=config.workers, threads=4, processes=2) as rt:
        with _progress(console) as progress:
            work = _fill(rt, config, progress)
            rt.resume()
            await _cancel_running(work.specials)
            await rt.join()
    dispatched = await run_dispatch_demo(config.seed)
    report = DemoReport(
        workload=work, metrics=rt.metrics(), loop=loop, elapsed=time.monotonic() - started
    )
    report.dispatch = dispatched
    report.checks = check_report(report) + dispatch_checks(dispatched)
    return report


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[states]}"),
        TimeElapsedColumn(),
        console=console,
    )


def _fill(rt: aw.Runtime, config: DemoConfig, progress: Progress) -> Workload:
    """Queue the whole workload on a paused runtime and hook the progress bar to it.

    Pausing first makes the priority order visible: every job is queued before any starts,
    so the HIGH ones, queued last, start before the LOW ones queued first.
    """
    bar = progress.add_task("jobs", total=None, states="")
    states: Counter[str] = Counter()

    def on_complete(job: aw.Job[Any]) -> None:
        states[job.state.name.lower()] += 1
        progress.update(bar, advance=1, states=_state_text(states))

    rt.on_complete(on_complete)
    rt.pause()
    specials = _submit_specials(rt)
    work = Workload(*_submit_plain(rt, config), specials=specials)
    progress.update(bar, total=work.total())
    return work


def _state_text(states: Counter[str]) -> str:
    return " ".join(f"{name} {count}" for name, count in sorted(states.items()))


def _submit_plain(
    rt: aw.Runtime, config: DemoConfig
) -> tuple[
    list[aw.Job[float]],
    list[aw.Job[float]],
    list[aw.Job[float]],
    list[aw.Job[int]],
    list[aw.Job[int]],
]:
    """The bulk of the work: I/O jobs by priority, LOW ones first, then blocking and CPU."""
    rng = random.Random(config.seed)
    third = max(1, config.jobs // 3)
    groups: list[list[aw.Job[float]]] = []
    for priority, count in (
        (aw.Priority.LOW, third),
        (aw.Priority.NORMAL, max(0, config.jobs - 2 * third)),
        (aw.Priority.HIGH, third),
    ):
        groups.append(
            [
                rt.submit_nowait(io_call, rng.uniform(0.005, 0.03), priority=priority)
                for _ in range(count)
            ]
        )
    blocking = [
        rt.submit_nowait(blocking_poll, 5, 0.01, name=f"blocking-{i}")
        for i in range(max(1, config.jobs // 40))
    ]
    cpu = [
        rt.submit_nowait(crunch, CRUNCH_N, kind="process", name=f"crunch-{i}", priority=4)
        for i in range(2)
    ]
    return groups[0], groups[1], groups[2], blocking, cpu


def _submit_specials(rt: aw.Runtime) -> Specials:
    """The jobs worth a line each. HIGHEST priority: they start as soon as the runtime does."""
    token = aw.CancellationToken()
    top = aw.Priority.HIGHEST
    return Specials(
        token=token,
        by_token=rt.submit_nowait(sleep_forever, token=token, name="watch", priority=top),
        thread_by_token=rt.submit_nowait(
            blocking_poll, 1000, 0.01, token=token, name="poll", priority=top
        ),
        by_cancel=rt.submit_nowait(sleep_forever, name="stuck", priority=top),
        flaky=rt.submit_nowait(
            flaky_fetch,
            FLAKY_ATTEMPTS,
            retry=aw.Retry(attempts=FLAKY_ATTEMPTS, backoff=0.05),
            name="flaky",
            priority=top,
        ),
        timed_out=rt.submit_nowait(sleep_forever, timeout=TIMEOUT_S, name="slow", priority=top),
    )


async def _cancel_running(specials: Specials) -> None:
    """Cancel the token's jobs, then the stuck one, each once it has run a little.

    One at a time, so that it works with any worker count: with a single worker, ``watch``
    holds it until the token is cancelled, which also cancels ``poll`` before it ever
    starts (still CANCELLED, as promised), and only then can ``stuck`` start.
    """
    await _run_a_little(specials.by_token)
    specials.token.cancel("the demo cancelled their token")
    await _run_a_little(specials.by_cancel)
    specials.by_cancel.cancel("the demo called job.cancel()")


async def _run_a_little(job: aw.Job[Any]) -> None:
    while job.state is aw.JobState.PENDING:
        await anyio.sleep(0.005)
    await anyio.sleep(CANCEL_AFTER_S)


# -- what it showed ------------------------------------------------------------------------


def check_report(report: DemoReport) -> list[tuple[str, bool]]:
    """Check each claim the demo makes; a failed check makes the demo exit 1."""
    work, m = report.workload, report.metrics
    sp = work.specials
    first_low = min(job.started_at or 0.0 for job in work.low)
    last_high = max(job.started_at or 0.0 for job in work.high)
    timeout_error = sp.timed_out.exception() if sp.timed_out.done() else None
    return [
        (
            f"priority: {len(work.high)} HIGH jobs all started before {len(work.low)} LOW "
            "ones queued earlier",
            last_high <= first_low,
        ),
        (
            "cancellation: watch, poll and stuck ended CANCELLED",
            all(job.state is aw.JobState.CANCELLED for job in sp.cancelled()),
        ),
        (
            f"retry: flaky succeeded on attempt {FLAKY_ATTEMPTS}",
            sp.flaky.state is aw.JobState.COMPLETED and sp.flaky.attempts == FLAKY_ATTEMPTS,
        ),
        ("timeout: slow ended FAILED with JobTimeout", isinstance(timeout_error, aw.JobTimeout)),
        (
            "process jobs returned the right sums",
            all(
                job.state is aw.JobState.COMPLETED and job.result() == CRUNCH_SUM
                for job in work.cpu
            ),
        ),
        (
            "metrics: every submitted job finished, as counted",
            m.submitted == work.total() == m.finished and m.cancelled == 3 and m.failed == 1,
        ),
    ]


def render_report(report: DemoReport, console: Console) -> None:
    """Print the notable jobs, the metrics tables and the checks."""
    console.print(notable_table(report.workload.specials))
    console.print(counters_table(report.metrics))
    console.print(latency_table(report.metrics))
    if report.dispatch is not None:
        console.print(dispatch_table(report.dispatch))
    for text, ok in report.checks:
        mark = "[green]ok  [/]" if ok else "[bold red]FAIL[/]"
        console.print(f"{mark} {text}", highlight=False)
    console.print(f"done in {report.elapsed:.2f} s on the {report.loop} loop", highlight=False)


def notable_table(sp: Specials) -> Table:
    """One row per job the demo points at: what happened to it and why."""
    table = Table(title="Notable jobs")
    for heading in ("", "job", "how", "state", "tries", "outcome"):
        table.add_column(heading, overflow="fold")
    rows = (
        ("cancelled", sp.by_token, "token"),
        ("cancelled", sp.thread_by_token, "token"),
        ("cancelled", sp.by_cancel, "job.cancel()"),
        ("retried", sp.flaky, f"Retry({FLAKY_ATTEMPTS})"),
        ("timed out", sp.timed_out, f"timeout {TIMEOUT_S}s"),
    )
    for label, job, how in rows:
        how = f"{how} ({job.kind})"
        table.add_row(label, job.name, how, job.state.name, str(job.attempts), _outcome(job))
    return table


def _outcome(job: aw.Job[Any]) -> str:
    if not job.done():
        return "still running"
    error = job.exception()
    if error is None:
        return repr(job.result())
    return type(error).__name__


def counters_table(m: aw.Metrics) -> Table:
    """The runtime's counters as a one-row table."""
    table = Table(title="Counters")
    names = ("submitted", "completed", "failed", "cancelled", "retried", "worker_errors")
    for name in names:
        table.add_column(name, justify="right")
    table.add_row(*(str(getattr(m, name)) for name in names))
    return table


def latency_table(m: aw.Metrics) -> Table:
    """Wait (queued to started) and run (started to finished) percentiles, in ms."""
    table = Table(title="Latency (ms)")
    table.add_column("", justify="left")
    for heading in ("p50", "p90", "p99", "max", "count"):
        table.add_column(heading, justify="right")
    for label, lat in (("wait", m.wait_time), ("run", m.run_time)):
        table.add_row(
            label,
            *(f"{1000 * v:.2f}" for v in (lat.p50, lat.p90, lat.p99, lat.max)),
            str(lat.count),
        )
    return table
