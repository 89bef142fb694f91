"""OpenTelemetry tracing of store jobs: one span per job, continued from the producer's
trace; nothing at all when no tracer provider is set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import asyncworkers as aw
from _store_support import PROCESS_GUARD, REPO
from asyncworkers.ops._tracing import TRACE_KEY, job_tracer


def test_a_job_span_continues_the_producers_trace(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "tests/_ops_trace_scenario.py", str(tmp_path / "jobs.db")],
        cwd=REPO, capture_output=True, text=True, timeout=PROCESS_GUARD,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    assert out["results"] == [4, 9, 10]
    spans = {span["name"] + str(span["attributes"].get("asyncworkers.job_id", "")): span
             for span in out["spans"]}  # fmt: skip
    producer = spans["producer"]
    first, second, third = (spans[f"asyncworkers job {t}{i}"] for i, t in
                            ((1, "traced"), (2, "traced_thread"), (3, "traced")))  # fmt: skip
    for job in (first, second):  # enqueued inside the producer's span: one trace
        assert (job["trace"], job["parent"]) == (producer["trace"], producer["id"])
    assert third["trace"] != producer["trace"]
    assert third["parent"] is None
    assert first["attributes"] == {
        "asyncworkers.task": "traced", "asyncworkers.queue": "default",
        "asyncworkers.job_id": 1, "asyncworkers.attempt": 1, "asyncworkers.outcome": "succeeded",
    }  # fmt: skip
    # the job's own spans are children of its job span, in a coroutine and in a thread
    inside = [s for s in out["spans"] if s["name"].startswith("inside")]
    assert sorted(s["parent"] for s in inside) == sorted([first["id"], third["id"], second["id"]])
    assert TRACE_KEY in out["args"][0]
    assert TRACE_KEY not in out["args"][2]  # no span was current: nothing carried


def test_without_a_tracer_provider_nothing_is_traced_or_carried() -> None:
    assert job_tracer() is None  # the test process never sets a provider
    job = aw.store.new_job("t", {"a": 1})
    assert json.loads(job.args_json) == {"a": 1}


async def test_the_reserved_key_never_reaches_the_task(tmp_path: Path) -> None:
    tasks = aw.store.TaskRegistry()
    seen: list[dict[str, Any]] = []

    @tasks.task("strict")
    async def strict(a: int) -> int:  # no **kwargs: an extra key would be rejected
        seen.append({"a": a})
        return a

    async with aw.store.SQLiteStore(tmp_path / "jobs.db") as store:
        job_id = await store.enqueue("strict", {"a": 1, TRACE_KEY: {"traceparent": "junk"}})
        async with aw.store.Manager(store, tasks, poll_interval=0.05) as manager:
            assert await store.result(job_id, timeout=PROCESS_GUARD) == 1
            manager.stop()
    assert seen == [{"a": 1}]


def test_no_opentelemetry_means_no_trace_key(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncworkers.ops._tracing as tracing

    monkeypatch.setattr(tracing, "_installed", False)  # as if the extra were not installed
    assert tracing.inject_trace() is None
    assert tracing.job_tracer() is None
