"""Process jobs: ``kind="process"`` runs the function in a pool of worker processes.

Real processes throughout (anyio.to_process), so these tests are few: spawning a worker
costs about a tenth of a second. The functions live in ``_proc_funcs``, a module the worker
can import. A child tells the test its pid through a file (``write_pid_then_sleep``), which
the test polls with a bound; the ``time.sleep`` inside a child is the slow work that only a
kill cuts short, never synchronization.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import _proc_funcs as pf
import asyncworkers as aw
from _helpers import no_hang, settle

# Bound on every wait for something that should happen: a hang becomes a failure.
GUARD = 20.0


def state(job: aw.Job[Any]) -> aw.JobState:
    """The state now (a call, so that mypy does not narrow it across awaits)."""
    return job.state


async def pid_from(path: Path) -> int:
    """The pid a child wrote to *path*, polled for with a bound."""
    deadline = time.monotonic() + GUARD
    file = anyio.Path(path)
    while not await file.exists():
        assert time.monotonic() < deadline, f"the child never wrote {path}"
        await anyio.sleep(0.005)
    return int(await file.read_text(encoding="utf-8"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_process_job_returns_its_value_from_another_process() -> None:
    with no_hang():
        async with aw.Runtime(processes=1) as rt:
            job = rt.submit_nowait(pf.square, 12, kind="process")
            assert job.kind == "process"
            assert await job == 144
            child = await rt.run(pf.pid, kind="process")
            unit: aw.WorkUnit[int] = aw.WorkUnit(pf.square, args=(3,), kind="process")
            assert await rt.enqueue(unit) == 9
    assert child != os.getpid()


async def test_a_process_job_exception_keeps_its_type_and_message() -> None:
    with no_hang():
        async with aw.Runtime(processes=1) as rt:
            job = rt.submit_nowait(pf.fail, "bad input 42", kind="process")
            with pytest.raises(pf.CustomError) as info:
                await job
            assert info.value.args == ("bad input 42",)
            assert job.state is aw.JobState.FAILED
            assert await rt.run(pf.square, 2, kind="process") == 4  # the worker lives on
    # The child's traceback does not survive pickling; it comes back as a note.
    notes = "".join(getattr(info.value, "__notes__", []))
    assert "Traceback in the worker process" in notes
    assert "in fail" in notes


def local_function() -> None:
    pass


async def test_what_cannot_be_pickled_is_refused_at_submit_by_name() -> None:
    def nested() -> int:
        return 1

    async def coroutine_function() -> int:
        return 1

    with no_hang():
        async with aw.Runtime(processes=1) as rt:
            with pytest.raises(TypeError, match=r"picklable.*the function .*<lambda>"):
                rt.submit_nowait(lambda: 1, kind="process")
            with pytest.raises(TypeError, match=r"picklable.*the function .*nested"):
                rt.submit_nowait(nested, kind="process")
            with pytest.raises(TypeError, match=r"picklable.*positional argument 1 \(<unlocked"):
                rt.submit_nowait(pf.first, 1, threading.Lock(), kind="process")
            unit: aw.WorkUnit[int] = aw.WorkUnit(
                pf.square, kwargs={"x": threading.Lock()}, kind="process"
            )
            with pytest.raises(TypeError, match=r"picklable.*keyword argument 'x'"):
                rt.enqueue(unit)
            with pytest.raises(TypeError, match="coroutine function"):
                rt.submit_nowait(coroutine_function, kind="process")
            assert rt.metrics().submitted == 0  # nothing was queued
            # A module-level function with picklable arguments is fine, of course.
            rt.submit_nowait(local_function, kind="process")


@pytest.mark.parametrize("crash", [pf.exit_hard, pf.kill_self], ids=["os._exit", "SIGKILL"])
async def test_a_dying_child_fails_only_its_job(crash: Any, tmp_path: Path) -> None:
    pid_file, release = tmp_path / "sibling.pid", tmp_path / "release"
    with no_hang():
        async with aw.Runtime(processes=2) as rt:
            # A sibling job runs in the other worker process while the crash happens.
            sibling = rt.submit_nowait(
                pf.write_pid_then_wait_for, str(pid_file), str(release), GUARD, kind="process"
            )
            sibling_pid = await pid_from(pid_file)
            args = (1,) if crash is pf.exit_hard else ()
            doomed = rt.submit_nowait(crash, *args, kind="process", name="doomed")
            assert await doomed.wait() is aw.JobState.FAILED
            error = doomed.exception()
            assert isinstance(error, aw.WorkerCrashed)
            assert isinstance(error, aw.AsyncworkersError)
            assert "'doomed'" in str(error)
            assert await rt.run(pf.square, 5, kind="process") == 25  # the pool serves on
            assert state(sibling) is aw.JobState.RUNNING
            assert alive(sibling_pid)
            release.touch()
            assert await sibling == "released"  # and the sibling never noticed


@pytest.mark.parametrize("how", ["job.cancel", "token", "timeout", "shutdown"])
async def test_stopping_a_running_process_job_kills_its_process(how: str, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    token = aw.CancellationToken()
    timeout = 0.5 if how == "timeout" else None
    with no_hang():
        async with aw.Runtime(processes=1) as rt:
            warm = await rt.run(pf.pid, kind="process")  # spawned now, not on the job's clock
            job = rt.submit_nowait(
                pf.write_pid_then_sleep,
                str(pid_file),
                GUARD,
                kind="process",
                token=token,
                timeout=timeout,
            )
            pid = await pid_from(pid_file)
            assert pid == warm  # the pool's one worker process runs the job
            if how == "job.cancel":
                assert job.cancel("stop it") is True
            elif how == "token":
                token.cancel("stop it")
            elif how == "shutdown":
                await rt.shutdown(wait=False)
            final = await job.wait()
            # Killed and reaped before the job ended: not even a zombie is left.
            assert not alive(pid), f"process {pid} outlived its stopped job"
            if how != "shutdown":
                assert await rt.run(pf.square, 3, kind="process") == 9  # a new worker
    if how == "timeout":
        assert final is aw.JobState.FAILED
        assert isinstance(job.exception(), aw.JobTimeout)
    else:
        assert final is aw.JobState.CANCELLED
        assert isinstance(job.exception(), aw.JobCancelled)


@pytest.mark.parametrize("where", ["queue", "process slot"])
async def test_a_cancelled_pending_process_job_never_starts(where: str, tmp_path: Path) -> None:
    blocker_file, marker = tmp_path / "blocker.pid", tmp_path / "started"
    # workers=1: the second job waits in the queue; processes=1: a worker waits for the slot.
    workers = 1 if where == "queue" else 4
    with no_hang():
        async with aw.Runtime(workers=workers, processes=1) as rt:
            blocker = rt.submit_nowait(
                pf.write_pid_then_sleep, str(blocker_file), GUARD, kind="process"
            )
            await pid_from(blocker_file)
            pending = rt.submit_nowait(pf.touch, str(marker), kind="process")
            await settle()
            expected = aw.JobState.PENDING if where == "queue" else aw.JobState.RUNNING
            assert state(pending) is expected
            assert pending.cancel("not needed") is True
            assert await pending.wait() is aw.JobState.CANCELLED
            blocker.cancel()
            await blocker.wait()
            # The slot is free again; had the cancelled job been started, it would run first.
            assert await rt.run(pf.square, 4, kind="process") == 16
    assert not marker.exists()


async def test_processes_bound_how_many_process_jobs_run_at_once(tmp_path: Path) -> None:
    with no_hang():
        async with aw.Runtime(workers=8, processes=2) as rt:
            # Warm-up: two jobs that wait for each other, so both worker processes exist.
            pair = [
                rt.submit_nowait(
                    pf.rendezvous, str(tmp_path), f"{i}.here", 2, GUARD, kind="process"
                )
                for i in range(2)
            ]
            assert [await job for job in pair] == [True, True]
            jobs = [rt.submit_nowait(pf.hold, 0.3, kind="process") for _ in range(4)]
            spans = [await job for job in jobs]
    # The most jobs whose [start, end) overlap, on the system-wide monotonic clock.
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak == 2
