"""``aw.ops`` in one process: a plain Runtime's endpoint, the watchdog, the admin token, and
bad input. (A real worker process is tested in tests/test_ops_worker.py.)"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

import asyncworkers as aw
from asyncworkers.ops._target import view_of


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def fetch(url: str, method: str = "GET", **kwargs: Any) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, **kwargs) as response,
    ):
        return response.status, await response.text()


def total(got: dict[Any, float], outcome: str) -> float:
    return got[("asyncworkers_jobs_total", (("outcome", outcome), ("queue", ""), ("task", "")))]


async def test_a_runtime_endpoint_counts_what_ran() -> None:
    async def ok(i: int) -> int:
        return i

    async def boom() -> None:
        raise ValueError("boom")

    never = anyio.Event()

    async def wait_forever() -> None:
        await never.wait()

    async with aw.Runtime(workers=4) as rt, aw.ops.serve(rt, "127.0.0.1", 0) as ops:
        for i in range(25):
            await rt.run(ok, i)
        failed = rt.submit_nowait(boom)
        await failed.wait()
        stopped = rt.submit_nowait(wait_forever)
        while stopped.state is not aw.JobState.RUNNING:
            await asyncio.sleep(0)
        status, text = await fetch(ops.url + "/metrics")
        got = samples(text)
        assert got[("asyncworkers_jobs_in_flight", ())] == 1
        stopped.cancel()
        await stopped.wait()

        status, text = await fetch(ops.url + "/metrics")
        assert status == 200
        got = samples(text)
        assert (total(got, "succeeded"), total(got, "failed"), total(got, "cancelled")) == (
            25,
            1,
            1,
        )
        assert got[("asyncworkers_job_run_seconds_count", ())] == 27
        assert got[("asyncworkers_job_wait_seconds_count", ())] == 27
        assert got[("asyncworkers_job_run_seconds_bucket", (("le", "+Inf"),))] == 27
        assert not any(name.startswith("asyncworkers_store") for name, _ in got)

        assert (await fetch(ops.url + "/readyz"))[0] == 200
        rt.pause()
        status, text = await fetch(ops.url + "/readyz")
        assert (status, json.loads(text)["reason"]) == (503, "paused")
        rt.resume()
        status, text = await fetch(ops.url + "/api/status")
        view = json.loads(text)
        assert view["kind"] == "runtime"
        assert view["store"] is None
        assert view["counters"]["completed"] == 25
        # keep-alive: a second request on the same connection reaches aiohttp's /healthz
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                async with session.get(ops.url + "/healthz") as response:
                    assert response.status == 200
        status, text = await fetch(ops.url + "/api/jobs/1/retry", "POST")
        assert status == 403  # no admin actions unless asked for
    # the endpoint is gone with the block: nothing listens on its port any more
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(ops.address, timeout=5).close()


async def test_the_watchdog_logs_counts_and_cancels_a_stuck_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    never = anyio.Event()

    async def stuck() -> None:
        await never.wait()

    options = aw.ops.Options(stuck_after=0.05, stuck_interval=0.02, stuck_action="cancel")
    caplog.set_level(logging.WARNING, "asyncworkers.ops")
    async with aw.Runtime(workers=2) as rt, aw.ops.serve(rt, "127.0.0.1", 0, options) as ops:
        job = rt.submit_nowait(stuck, name="sleeper")
        with pytest.raises(aw.JobCancelled, match="stuck"):
            await job
        _, text = await fetch(ops.url + "/metrics")
        assert samples(text)[("asyncworkers_stuck_jobs_found_total", ())] == 1
    (record,) = [r for r in caplog.records if "stuck job" in r.getMessage()]
    assert f"stuck job {job.id} (task sleeper)" in record.getMessage()


async def test_the_watchdog_alone_only_reports(caplog: pytest.LogCaptureFixture) -> None:
    release = anyio.Event()

    async def slow() -> str:
        await release.wait()
        return "done"

    options = aw.ops.Options(stuck_after=0.05, stuck_interval=0.02)
    caplog.set_level(logging.WARNING, "asyncworkers.ops")
    async with aw.Runtime(workers=2) as rt:
        ops = aw.ops.serve(rt, "127.0.0.1", 0, options)
        async with ops:
            job = rt.submit_nowait(slow)
            while not any("stuck job" in r.getMessage() for r in caplog.records):
                await asyncio.sleep(0.01)
            assert ops.watchdog is not None
            assert [r.id for r in ops.watchdog.current] == [job.id]
            release.set()
            assert await job == "done"  # logged, never cancelled
            while ops.stuck.now:
                await asyncio.sleep(0.01)
    assert [r for r in caplog.records if "stuck job" in r.getMessage()].__len__() == 1


async def test_a_token_guards_the_admin_actions() -> None:
    async with (
        aw.Runtime() as rt,
        aw.ops.serve(rt, "127.0.0.1", 0, aw.ops.Options(token="s3cret")) as ops,
    ):
        url = ops.url + "/api/jobs/123/cancel"
        status, _ = await fetch(url, "POST", headers={"X-Asyncworkers-Csrf": ops.csrf})
        assert status == 401
        headers = {"X-Asyncworkers-Csrf": ops.csrf, "Authorization": "Bearer s3cret"}
        status, text = await fetch(url, "POST", headers=headers)
        assert (status, json.loads(text)) == (409, {"ok": False})  # no such job: nothing done
        status, _ = await fetch(ops.url + "/api/jobs/x/cancel", "POST", headers=headers)
        assert status == 400
        status, page = await fetch(ops.url + "/")
        assert '"token": true' in page
        assert "s3cret" not in page


async def test_a_port_in_use_fails_the_start_and_leaves_nothing_behind() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with aw.Runtime() as rt:
            with pytest.raises(OSError, match=r"(?i)address already in use"):
                async with aw.ops.serve(rt, "127.0.0.1", port):
                    pass
            assert rt._hooks == ()  # the metrics hook was removed again


def test_bad_input_fails_where_it_is_given(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lag_threshold"):
        aw.ops.Options(lag_threshold=0)
    with pytest.raises(TypeError, match="refresh"):
        aw.ops.Options(refresh="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stuck_action"):
        aw.ops.Options(stuck_action="kill")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="HOST:PORT"):
        aw.ops.parse_address("localhost")
    with pytest.raises(ValueError, match="port"):
        aw.ops.parse_address("127.0.0.1:99999")
    with pytest.raises(ValueError, match="brackets"):
        aw.ops.parse_address("::1:9600")
    assert aw.ops.parse_address("[::1]:0") == ("::1", 0)
    assert aw.ops.parse_address("9600") == ("127.0.0.1", 9600)
    with pytest.raises(TypeError, match=r"Runtime or an aw\.store\.Manager"):
        aw.ops.serve(object())
    with pytest.raises(ValueError, match="port"):
        aw.ops.serve(aw.Runtime(), port=-1)
    tasks = aw.store.TaskRegistry()
    with pytest.raises(ValueError, match="HOST:PORT"):
        aw.store.Manager(aw.store.SQLiteStore(tmp_path / "jobs.db"), tasks, http="nowhere")
    with pytest.raises(TypeError, match="ops must be"):
        aw.store.Manager(aw.store.SQLiteStore(tmp_path / "jobs.db"), tasks, ops={"admin": True})  # type: ignore[arg-type]


def test_the_view_of_a_runtime_before_it_starts_is_not_ready() -> None:
    assert view_of(aw.Runtime()).readiness() == "shutting down"
