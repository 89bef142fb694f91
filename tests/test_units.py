"""The job handle (Job), WorkUnit, Priority and JobState, seen through a live runtime."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import pytest

import asyncworkers as aw
from _helpers import Blocker, Boom, all_blocked, double, fail, no_hang


async def test_pending_job_has_no_result_yet() -> None:
    async with aw.Runtime(1) as rt:
        rt.pause()
        job = rt.submit_nowait(double, 4)
        assert job.state is aw.JobState.PENDING
        assert not job.done()
        assert job.attempts == 0
        assert job.started_at is None
        assert job.finished_at is None
        with pytest.raises(asyncio.InvalidStateError):
            job.result()
        with pytest.raises(asyncio.InvalidStateError):
            job.exception()
        rt.resume()
        with no_hang():
            assert await job == 8


async def test_completed_job() -> None:
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(double, 21)
        with no_hang():
            assert await job.wait() is aw.JobState.COMPLETED
        assert job.done()
        assert job.state is aw.JobState.COMPLETED
        assert job.result() == 42
        assert job.exception() is None
        assert await job == 42
        assert await job == 42  # awaiting again gives the same value
        assert job.attempts == 1
        assert job.cancel() is False
        assert job.state is aw.JobState.COMPLETED
        assert not job.cancelled()


async def test_failed_job_raises_its_own_exception() -> None:
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(fail, "bad")
        with no_hang():
            assert await job.wait() is aw.JobState.FAILED  # wait() never raises
        error = job.exception()
        assert isinstance(error, Boom)
        assert str(error) == "bad"
        with pytest.raises(Boom) as info:
            job.result()
        assert info.value is error
        with pytest.raises(Boom) as info2:
            await job
        assert info2.value is error
        assert job.cancel() is False
        assert rt.metrics().failed == 1


async def test_cancel_pending_job() -> None:
    async with aw.Runtime(1) as rt:
        rt.pause()
        job = rt.submit_nowait(double, 1)
        assert job.cancel("no longer needed") is True
        assert job.done()
        assert job.cancelled()
        assert job.state is aw.JobState.CANCELLED
        error = job.exception()
        assert isinstance(error, aw.JobCancelled)
        assert error.reason == "no longer needed"
        with pytest.raises(aw.JobCancelled):
            job.result()
        with pytest.raises(aw.JobCancelled):
            await job
        assert await job.wait() is aw.JobState.CANCELLED
        assert job.cancel() is False  # already finished
        assert job.attempts == 0  # it never started
        rt.resume()


async def test_cancel_running_job_returns_true() -> None:
    holder = Blocker()
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(holder.run)
        with no_hang():
            await holder.started.wait()
        assert job.state is aw.JobState.RUNNING
        assert job.cancel() is True
        with no_hang():
            assert await job.wait() is aw.JobState.CANCELLED
        assert job.cancel() is False


async def test_cancel_reason_must_be_a_string() -> None:
    async with aw.Runtime(1) as rt:
        rt.pause()
        job = rt.submit_nowait(double, 1)
        with pytest.raises(TypeError, match="reason") as info:
            job.cancel(reason=3)  # type: ignore[arg-type]
        assert "3" in str(info.value)
        assert job.state is aw.JobState.PENDING
        rt.resume()


async def test_done_callbacks_run_once_and_at_once_when_done() -> None:
    seen: list[tuple[str, aw.JobState]] = []
    async with aw.Runtime(1) as rt:
        rt.pause()
        job = rt.submit_nowait(double, 1)
        job.add_done_callback(lambda j: seen.append(("first", j.state)))
        job.add_done_callback(lambda j: seen.append(("second", j.state)))
        assert seen == []
        rt.resume()
        with no_hang():
            await job.wait()
        assert seen == [("first", aw.JobState.COMPLETED), ("second", aw.JobState.COMPLETED)]
        job.add_done_callback(lambda j: seen.append(("late", j.state)))
        assert seen[-1] == ("late", aw.JobState.COMPLETED)
        assert len(seen) == 3


async def test_done_callback_gets_the_job_and_a_raising_one_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    got: list[aw.Job[Any]] = []

    def bad(job: aw.Job[Any]) -> None:
        raise RuntimeError("done-callback bug")

    async with aw.Runtime(1) as rt:
        rt.pause()
        job = rt.submit_nowait(double, 5)
        job.add_done_callback(bad)
        job.add_done_callback(got.append)
        with caplog.at_level(logging.ERROR, logger="asyncworkers"):
            rt.resume()
            with no_hang():
                assert await job == 10
        assert got == [job]
        assert any("done-callback bug" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
        # the runtime is fine
        with no_hang():
            assert await rt.run(double, 1) == 2


async def test_add_done_callback_needs_a_callable() -> None:
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(double, 1)
        with pytest.raises(TypeError, match="callable") as info:
            job.add_done_callback("nope")  # type: ignore[arg-type]
        assert "nope" in str(info.value)


async def test_many_awaiters_and_a_cancelled_one_does_not_disturb_the_others() -> None:
    holder = Blocker()
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(holder.run, 7)
        with no_hang():
            await holder.started.wait()

        async def await_job() -> int:
            return await job

        waiters = [asyncio.create_task(await_job()) for _ in range(3)]
        await all_blocked()  # the three are awaiting the job
        waiters[1].cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiters[1]
        assert job.state is aw.JobState.RUNNING  # cancelling an awaiter never cancels the job
        holder.release.set()
        with no_hang():
            assert await waiters[0] == 7
            assert await waiters[2] == 7


async def test_repr_shows_state() -> None:
    async with aw.Runtime(1) as rt:
        rt.pause()
        job = rt.submit_nowait(double, 1, name="doubler")
        text = repr(job)
        assert f"id={job.id}" in text
        assert "doubler" in text
        assert "PENDING" in text
        rt.resume()
        with no_hang():
            await job
        assert "COMPLETED" in repr(job)
        assert "attempts=1" in repr(job)


async def test_identity_fields_name_kind_metadata_priority() -> None:
    def plain(x: int) -> int:
        return x

    async with aw.Runtime(2) as rt:
        a = rt.submit_nowait(double, 1)
        b = rt.submit_nowait(double, 2, name="custom", metadata={"k": 1}, priority=aw.Priority.HIGH)
        c = rt.submit_nowait(functools.partial(double, 3))
        d = rt.submit_nowait(plain, 4, priority=-5)
        with no_hang():
            assert [await a, await b, await c, await d] == [2, 4, 6, 4]
        assert a.name == "double"
        assert b.name == "custom"
        assert "double" in c.name
        assert d.name.endswith("plain")
        assert a.metadata == {}
        assert b.metadata == {"k": 1}
        assert a.priority == aw.Priority.NORMAL
        assert b.priority == aw.Priority.HIGH
        assert d.priority == -5
        assert (a.kind, c.kind, d.kind) == ("async", "async", "thread")
        assert len({a.id, b.id, c.id, d.id}) == 4


async def test_timings_are_ordered() -> None:
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(double, 1)
        with no_hang():
            await job
        assert job.started_at is not None
        assert job.finished_at is not None
        assert job.queued_at <= job.started_at <= job.finished_at


async def test_job_from_a_failed_run_is_not_awaited_twice_with_different_errors() -> None:
    async with aw.Runtime(1) as rt:
        job = rt.submit_nowait(fail, "once")
        with pytest.raises(Boom) as first:
            await job
        with pytest.raises(Boom) as second:
            await job
        assert first.value is second.value


def test_work_unit_defaults() -> None:
    unit: aw.WorkUnit[int] = aw.WorkUnit(double)
    assert unit.fn is double
    assert unit.args == ()
    assert dict(unit.kwargs) == {}
    assert unit.callback is None
    assert unit.priority == aw.Priority.NORMAL
    assert unit.name is None
    assert unit.timeout is None
    assert unit.retry is None
    assert unit.token is None
    assert unit.metadata is None
    assert unit.kind is None
    # each unit gets its own kwargs mapping
    assert aw.WorkUnit(double).kwargs is not aw.WorkUnit(double).kwargs


def test_priority_compares_as_int() -> None:
    assert aw.Priority.HIGHEST > aw.Priority.HIGH > aw.Priority.NORMAL > aw.Priority.LOW
    assert aw.Priority.LOW > aw.Priority.LOWEST
    assert int(aw.Priority.NORMAL) == 2
    assert aw.Priority.LOWEST > -1


def test_current_job_is_none_outside_a_job() -> None:
    assert aw.current_job() is None
