"""Process jobs: ``kind="process"`` runs the function in a pool of worker processes.

Real processes throughout (anyio.to_process), so these tests are few: spawning a worker
costs about a tenth of a second. The functions live in ``_proc_funcs``, a module the worker
can import. A child tells the test its pid by calling the test's ``Switchboard`` (a listener
on 127.0.0.1), and may wait on that line for the test's go-ahead; the ``time.sleep`` inside
a child is the slow work that only a kill cuts short, never synchronization.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketListener, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

import _proc_funcs as pf
import asyncworkers as aw
from _helpers import HANG_GUARD as GUARD
from _helpers import all_blocked, no_hang, start_timeouts, state


@dataclass
class Call:
    """A child on the line: its pid, and the line to send it the go-ahead on."""

    pid: int
    line: SocketStream

    async def release(self) -> None:
        await self.line.send(b"go")
        await self.line.aclose()


class Switchboard:
    """Where children call in (``_proc_funcs.call_then_*``): the test waits for a call."""

    def __init__(self, listener: SocketListener) -> None:
        self._listener = listener
        self.port: int = listener.extra(SocketAttribute.local_port)
        self.lines: list[SocketStream] = []  # closed with the switchboard

    async def answer(self) -> Call:
        """The next child's call (its pid sent, the line kept open)."""
        line = await self._listener.accept()
        self.lines.append(line)
        pid = await BufferedByteReceiveStream(line).receive_until(b"\n", 32)
        return Call(int(pid), line)

    async def answer_or_end(self, job: aw.Job[Any]) -> Call | None:
        """The next call, or None if *job* ended first (it never called)."""
        result: list[Call] = []
        async with anyio.create_task_group() as tg:

            async def answer() -> None:
                result.append(await self.answer())
                tg.cancel_scope.cancel()

            async def end() -> None:
                await job.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(answer)
            tg.start_soon(end)
        return result[0] if result else None


@asynccontextmanager
async def switchboard() -> AsyncIterator[Switchboard]:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as multi:
        (listener,) = multi.listeners
        assert isinstance(listener, SocketListener)
        board = Switchboard(listener)
        try:
            yield board
        finally:
            for line in board.lines:
                await line.aclose()


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
async def test_a_dying_child_fails_only_its_job(crash: Any) -> None:
    with no_hang():
        async with aw.Runtime(processes=2) as rt, switchboard() as board:
            # A sibling job runs in the other worker process while the crash happens.
            sibling = rt.submit_nowait(pf.call_then_wait, board.port, GUARD, kind="process")
            call = await board.answer()
            args = (1,) if crash is pf.exit_hard else ()
            doomed = rt.submit_nowait(crash, *args, kind="process", name="doomed")
            assert await doomed.wait() is aw.JobState.FAILED
            error = doomed.exception()
            assert isinstance(error, aw.WorkerCrashed)
            assert isinstance(error, aw.AsyncworkersError)
            assert "'doomed'" in str(error)
            assert await rt.run(pf.square, 5, kind="process") == 25  # the pool serves on
            assert state(sibling) is aw.JobState.RUNNING
            assert alive(call.pid)
            await call.release()
            assert await sibling == "released"  # and the sibling never noticed


@pytest.mark.parametrize("how", ["job.cancel", "token", "timeout", "shutdown"])
async def test_stopping_a_running_process_job_kills_its_process(how: str) -> None:
    token = aw.CancellationToken()
    # A timeout must fire only once the child runs, and how soon it runs depends on the
    # machine's load: growing timeouts until one attempt started in time.
    timeouts: Iterator[float | None] = start_timeouts() if how == "timeout" else iter([None])
    with no_hang():
        async with aw.Runtime(processes=1) as rt:
            for timeout in timeouts:
                warm = await rt.run(pf.pid, kind="process")  # spawned now, not on the job's clock
                async with switchboard() as board:
                    job = rt.submit_nowait(
                        pf.call_then_sleep,
                        board.port,
                        GUARD,
                        kind="process",
                        token=token,
                        timeout=timeout,
                    )
                    call = await board.answer_or_end(job)
                if call is not None:
                    break
                assert job.state is aw.JobState.FAILED  # timed out before the child ran
                assert isinstance(job.exception(), aw.JobTimeout)
            assert call is not None, "the job ended before its child called"
            assert call.pid == warm  # the pool's one worker process runs the job
            if how == "job.cancel":
                assert job.cancel("stop it") is True
            elif how == "token":
                token.cancel("stop it")
            elif how == "shutdown":
                await rt.shutdown(wait=False)
            final = await job.wait()
            # Killed and reaped before the job ended: not even a zombie is left.
            assert not alive(call.pid), f"process {call.pid} outlived its stopped job"
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
    marker = tmp_path / "started"
    # workers=1: the second job waits in the queue; processes=1: a worker waits for the slot.
    workers = 1 if where == "queue" else 4
    with no_hang():
        async with aw.Runtime(workers=workers, processes=1) as rt, switchboard() as board:
            blocker = rt.submit_nowait(pf.call_then_sleep, board.port, GUARD, kind="process")
            await board.answer()
            pending = rt.submit_nowait(pf.touch, str(marker), kind="process")
            await all_blocked()
            expected = aw.JobState.PENDING if where == "queue" else aw.JobState.RUNNING
            assert state(pending) is expected
            assert pending.cancel("not needed") is True
            assert await pending.wait() is aw.JobState.CANCELLED
            blocker.cancel()
            await blocker.wait()
            # The slot is free again; had the cancelled job been started, it would run first.
            assert await rt.run(pf.square, 4, kind="process") == 16
    assert not marker.exists()


async def test_processes_bound_how_many_process_jobs_run_at_once() -> None:
    with no_hang():
        async with aw.Runtime(workers=8, processes=2) as rt, switchboard() as board:
            # Two jobs that run at once: both call in before either is let go. This also
            # starts both worker processes.
            pair = [rt.submit_nowait(pf.call_then_wait, board.port, GUARD, kind="process")]
            pair.append(rt.submit_nowait(pf.call_then_wait, board.port, GUARD, kind="process"))
            calls = [await board.answer(), await board.answer()]
            assert len({call.pid for call in calls}) == 2
            for call in calls:
                await call.release()
            assert [await job for job in pair] == ["released", "released"]
            jobs = [rt.submit_nowait(pf.hold, 0.3, kind="process") for _ in range(4)]
            spans = [await job for job in jobs]
    # Never more than two at once: the most jobs whose [start, end) overlap, on the
    # system-wide monotonic clock. (How many overlap depends on the machine's load; that two
    # can run at once is what the pair above shows, by events.)
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert 1 <= peak <= 2
