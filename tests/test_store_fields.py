"""The values a store accepts (store._fields): refused alike by every store before any
reaches a driver, with a TypeError or ValueError naming the field; what is accepted is
stored and given back alike. Issue 17 item 2 (the hypothesis tests: test_store_hypothesis.py).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import asyncworkers as aw
from _store_support import REPO, StoreFactory, opened, query
from asyncworkers.cli import main
from asyncworkers.store import NewJob, new_job
from asyncworkers.store._fields import MAX_PRIORITY, MAX_TIME, MIN_PRIORITY

W = "test-worker"

# (keyword arguments of enqueue, error type, a word of the message: the field's name)
REFUSED: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"task": "a\x00b"}, ValueError, "task"),
    ({"task": "a\ud800"}, ValueError, "task"),
    ({"task": "t" * 1025}, ValueError, "task"),
    ({"task": b"t"}, TypeError, "task"),
    ({"queue": "\x00"}, ValueError, "queue"),
    ({"queue": "\udfff"}, ValueError, "queue"),
    ({"key": "k\x00"}, ValueError, "key"),
    ({"key": "\ud83d"}, ValueError, "key"),
    ({"key": "k" * 3000}, ValueError, "key"),  # over a PostgreSQL index entry
    ({"key": ""}, ValueError, "key"),
    ({"args": {"a": "x\x00y"}}, ValueError, "arguments"),
    ({"args": {"a\x00": 1}}, ValueError, "arguments"),
    ({"args": {"a": ["\ud800"]}}, ValueError, "arguments"),
    ({"args": {"a": math.inf}}, TypeError, "arguments"),
    ({"priority": 2**40}, ValueError, "priority"),
    ({"priority": 2**31}, ValueError, "priority"),
    ({"priority": -(2**31) - 1}, ValueError, "priority"),
    ({"priority": 2**70}, ValueError, "priority"),
    ({"priority": 1.0}, TypeError, "priority"),
    ({"max_attempts": 2**31}, ValueError, "max_attempts"),
    ({"max_attempts": -1}, ValueError, "max_attempts"),
    ({"delay": 1e13}, ValueError, "delay"),
    ({"delay": math.inf}, ValueError, "delay"),
    ({"delay": math.nan}, ValueError, "delay"),
    ({"delay": 2**2000}, ValueError, "delay"),
    ({"priority": 10**5000}, ValueError, "priority"),
    ({"run_at": -1.0}, ValueError, "run_at"),
    ({"run_at": MAX_TIME + 1}, ValueError, "run_at"),
    ({"run_at": -math.inf}, ValueError, "run_at"),
    ({"run_at": "soon"}, TypeError, "run_at"),
]


async def test_bad_fields_are_refused_alike(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        for fields, error, word in REFUSED:
            kwargs = {"task": "t", **fields}
            with pytest.raises(error, match=word):
                await store.enqueue(**kwargs)
            with pytest.raises(error, match=word):
                await store.enqueue_many([new_job(**kwargs)])
        assert sum((await store.counts()).values()) == 0


def test_deep_nesting_is_a_value_error() -> None:
    nested: list[Any] = []
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(ValueError, match="nested too deeply"):
        new_job("t", {"a": nested})


@pytest.mark.parametrize(
    "fields",
    [
        {"task": "x", "args": {"task": "t"}},  # a field of NewJob by another route
        {"task": "t", "args_json": '{"a":"\\u0000"}'},
        {"task": "t", "args_json": '{"a":"\x00"}'},
        {"task": "t", "args_json": "{}", "priority": 2**40},
        {"task": "t", "args_json": "{}", "run_at": 1e13},
        {"task": "\x00", "args_json": "{}"},
    ],
)
def test_new_job_made_directly_is_checked(fields: dict[str, Any]) -> None:
    if "args" in fields:  # NewJob takes JSON text, never a dict
        with pytest.raises(TypeError):
            NewJob(**fields)
        return
    with pytest.raises(ValueError, match=r"task|arguments|priority|run_at"):
        NewJob(**fields)


async def test_the_edges_are_stored_and_given_back(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        edges: list[dict[str, Any]] = [
            {"priority": MAX_PRIORITY, "max_attempts": 2**31 - 1, "run_at": MAX_TIME},
            {"priority": MIN_PRIORITY, "run_at": 0.0, "key": "k" * 1024},
            {"task": "é🙂\U0010ffff", "queue": "ü" * 512, "args": {"s": "\\u0000 \U0001f642"}},
            {"args": {"big": 2**200, "neg": -(2**70), "f": 1e308, "nul": "\\u0000"}},
        ]
        for fields in edges:
            kwargs: dict[str, Any] = {"task": "t"}
            kwargs.update(fields)
            job_id = await store.enqueue(**kwargs)
            record = await store.get(job_id)
            assert record is not None
            assert record.task == kwargs["task"]
            assert record.args == kwargs.get("args", {})
            assert record.priority == kwargs.get("priority", 0)
            assert record.queue == kwargs.get("queue", "default")
            assert record.max_attempts == kwargs.get("max_attempts", 3)
            assert record.key == kwargs.get("key")
            if "run_at" in kwargs:
                assert record.run_at == pytest.approx(kwargs["run_at"], abs=1e-5)


# -- the other methods that take a user's value -------------------------------------------


@pytest.mark.parametrize(
    ("bad", "error"),
    [(0, ValueError), (-1, ValueError), (2**63, ValueError), (2**70, ValueError),
     ("1", TypeError), (1.0, TypeError), (True, TypeError)],
)  # fmt: skip
async def test_bad_ids_are_refused_alike(
    store_factory: StoreFactory, bad: Any, error: type[Exception]
) -> None:
    async with opened(store_factory) as store:
        await store.enqueue("t")
        for call in (store.get, store.retry, store.cancel, store.result):
            with pytest.raises(error, match="id"):
                await call(bad)
        assert await store.get(2**63 - 1) is None
        assert await store.cancel(2**63 - 1) is False
        assert await store.retry(2**63 - 1) is False


async def test_limits_and_filters_are_refused_alike(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        job_id = await store.enqueue("t", max_attempts=1)
        (claimed,) = await store.claim(None, 1, 30, W)
        assert await store.fail(claimed.id, claimed.token, "E", None)
        for bad, error in [(-1, ValueError), (2**63, ValueError), (1.5, TypeError)]:
            with pytest.raises(error, match="limit"):
                await store.dead(bad)  # type: ignore[arg-type]
        assert await store.dead(0) == []
        assert [r.id for r in await store.dead(2**63 - 1)] == [job_id]
        with pytest.raises(ValueError, match="queue"):
            await store.counts("\x00")
        with pytest.raises(ValueError, match="queue"):
            await store.counts("")
        for bad_time in (math.nan, 1e300, -1.0):
            with pytest.raises(ValueError, match="older_than"):
                await store.purge(bad_time)
        with pytest.raises(ValueError, match="timeout"):
            await store.result(job_id, timeout=-1)
        with pytest.raises(ValueError, match="timeout"):
            await store.result(job_id, timeout=math.nan)
        with pytest.raises(aw.store.JobDead):
            await store.result(job_id, timeout=math.inf)


async def test_claim_arguments_are_refused_alike(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        await store.enqueue("t")
        for limit in (0, -1, 2**63):
            with pytest.raises(ValueError, match="limit"):
                await store.claim(None, limit, 30, W)
        for lease in (0, -1.0, math.inf, math.nan, 1e300):
            with pytest.raises(ValueError, match="lease"):
                await store.claim(None, 1, lease, W)
        with pytest.raises(ValueError, match="worker"):
            await store.claim(None, 1, 30, "w\x00")
        with pytest.raises(ValueError, match="queues"):
            await store.claim(["a", "\ud800"], 1, 30, W)
        with pytest.raises(TypeError, match="queues"):
            await store.claim("default", 1, 30, W)
        with pytest.raises(ValueError, match="lease"):
            await store.heartbeat([(1, 1)], math.inf)
        assert (await store.counts())["queued"] == 1  # nothing was claimed
        (claimed,) = await store.claim(None, 1, 30, W)
        bad_refs: list[tuple[Any, Any, type[Exception]]] = [
            (2**70, claimed.token, ValueError), (claimed.id, 2**64, ValueError),
            (claimed.id, -1, ValueError), ("1", claimed.token, TypeError),
        ]  # fmt: skip
        for bad_id, bad_token, error in bad_refs:
            with pytest.raises(error, match=r"id|token"):
                await store.complete(bad_id, bad_token, "1")
            with pytest.raises(error, match=r"id|token"):
                await store.fail(bad_id, bad_token, "E", None)
            with pytest.raises(error, match=r"id|token"):
                await store.release(bad_id, bad_token)
            with pytest.raises(error, match=r"id|token"):
                await store.heartbeat([(bad_id, bad_token)], 30)
        with pytest.raises(ValueError, match="pairs"):
            await store.heartbeat([(1, 2, 3)], 30)  # type: ignore[list-item]
        assert await store.complete(claimed.id, claimed.token, "1")


async def test_outcomes_any_task_makes_are_stored(store_factory: StoreFactory) -> None:
    """A failure's text comes from the task's exception: kept (escaped), never refused."""
    async with opened(store_factory) as store:
        first = await store.enqueue("t")
        second = await store.enqueue("t")
        (claimed, other) = await store.claim(None, 2, 30, W)
        assert await store.fail(claimed.id, claimed.token, "E: \x00 \ud800 ok", 1e300)
        record = await store.get(first)
        assert record is not None
        assert (record.state, record.error) == ("queued", "E: \\x00 \\ud800 ok")
        assert record.run_at == pytest.approx(MAX_TIME)
        assert await store.fail(other.id, other.token, "x" * 50_000, None)
        record = await store.get(second)
        assert record is not None
        assert record.error is not None
        assert len(record.error) == 10_000
        with pytest.raises(ValueError, match="result_json"):
            await store.complete(first, claimed.token, '"\\u0000"')


def test_a_result_no_store_holds_is_a_type_error() -> None:
    from asyncworkers.store._jobs import encode_result

    for value in ("\x00", {"k\ud800": 1}, [math.nan]):
        with pytest.raises(TypeError, match="result of task 't'"):
            encode_result(value, task="t")
    assert encode_result("\\u0000", task="t") == '"\\\\u0000"'


def test_registry_defaults_are_checked_when_registered() -> None:
    tasks = aw.store.TaskRegistry()
    with pytest.raises(ValueError, match="priority"):
        tasks.task("t", priority=2**31)
    with pytest.raises(ValueError, match="queue"):
        tasks.task("t", queue="q\x00")
    with pytest.raises(ValueError, match="attempts"):
        tasks.task("t", retry=aw.Retry(attempts=2**40))
    with pytest.raises(ValueError, match="task name"):
        tasks.task("t\ud800")


def test_manager_refuses_names_no_store_holds() -> None:
    store = aw.store.SQLiteStore("unused.db")  # never opened
    tasks = aw.store.TaskRegistry()
    with pytest.raises(ValueError, match="worker"):
        aw.store.Manager(store, tasks, worker="w\x00")
    with pytest.raises(ValueError, match="queues"):
        aw.store.Manager(store, tasks, queues=["\udc80"])
    with pytest.raises(ValueError, match="concurrency key"):
        aw.store.Manager(store, tasks, concurrency={"\x00": 1})


# -- the command line ----------------------------------------------------------------------


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncworkers", *argv],
        cwd=REPO, capture_output=True, text=True, timeout=120, errors="backslashreplace",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["enqueue", "t", "--priority", "99999999999"], "--priority"),
        (["enqueue", "t", "--priority", "-2147483649"], "--priority"),
        (["enqueue", "t", "--max-attempts", "2147483648"], "--max-attempts"),
        (["enqueue", "t", "--delay", "1e13"], "delay"),
        (["enqueue", "t", "--delay", "inf"], "--delay"),
        (["enqueue", "t", '{"a": "\\u0000"}'], "arguments"),
        (["enqueue", "t", '{"a": "\\ud800"}'], "arguments"),
        (["enqueue", "t", "--key", "k" * 3000], "--key"),
        (["enqueue", "t\udcff"], "TASK"),
        (["enqueue", "t", "--queue", "\udcff"], "--queue"),
        (["status", "--dead", str(2**63)], "--dead"),
        (["retry", str(2**63)], "ID"),
        (["retry", "0"], "ID"),
    ],
)
def test_cli_bad_value_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], word: str
) -> None:
    db = tmp_path / "jobs.db"
    command = argv[0]
    try:
        status = main([command, "--store", f"sqlite:///{db}", *argv[1:]])
    except SystemExit as exit:  # argparse's way out
        status = exit.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    assert (status, out) == (2, ""), err
    (line,) = err.splitlines()
    assert line.startswith(f"asyncworkers {command}: error: ")
    assert word in line
    assert not db.exists()  # refused before the store was opened


@pytest.mark.parametrize("option", [["--priority", "99999999999"], ["--delay", "1e13"]])
def test_cli_enqueue_out_of_range_on_each_store(
    store_factory: StoreFactory, option: list[str]
) -> None:
    """The issue's two examples: a traceback on PostgreSQL, accepted by SQLite, before."""
    proc = cli("enqueue", "--store", store_factory.url, "t", *option)
    assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("asyncworkers enqueue: error: ")
    assert sum(query(store_factory, lambda s: s.counts()).values()) == 0


def test_periodic_names_leave_room_for_their_run_keys() -> None:
    tasks = aw.store.TaskRegistry()
    with pytest.raises(ValueError, match="run keys of periodic task"):
        tasks.periodic(60, name="p" * 1000)(lambda: None)
    tasks.periodic(60, name="p" * 900)(lambda: None)  # its keys fit


def test_manager_refuses_a_lease_no_claim_takes() -> None:
    store = aw.store.SQLiteStore("unused.db")  # never opened
    for lease in (math.inf, 1e300):
        with pytest.raises(ValueError, match="lease"):
            aw.store.Manager(store, aw.store.TaskRegistry(), lease=lease)


def test_cli_purge_older_than_1970_deletes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    assert main(["purge", "--store", url, "--older-than", "99999999999w"]) == 0
    out, err = capsys.readouterr()
    assert "0" in out
    assert err == ""


def test_cli_worker_queue_no_store_holds_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    argv = ["worker", "--store", url, "--tasks", "tests._store_tasks:tasks", "--queue", "\udcff"]
    assert main(argv) == 2
    _, err = capsys.readouterr()
    (line,) = err.splitlines()
    assert line.startswith("asyncworkers worker: error: ")
    assert "queues" in line
