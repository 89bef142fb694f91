"""Looking at jobs and deleting old ones, on every store: ``jobs()`` with filters, ``purge()``
by state in batches, a Manager's retention, and the ``jobs``, ``show`` and ``purge``
commands as users run them (in a subprocess)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import pytest

from _helpers import no_hang
from _store_support import TASKS, StoreFactory, opened, query
from asyncworkers.store import Manager, Store, TaskRegistry
from asyncworkers.store._jobs import new_job
from test_store_cli import Cli, cli, one_error_line


async def ended_jobs(store: Store) -> dict[str, list[int]]:
    """7 succeeded, 2 dead, 1 cancelled, 1 still queued (tasks a and b, queues q1 and q2)."""
    ids = await store.enqueue_many(
        [new_job("a" if i % 2 else "b", {"i": i}, queue="q1" if i < 6 else "q2") for i in range(9)]
    )
    claimed = await store.claim(None, 9, 30, "tester")
    for c in claimed[:7]:
        assert await store.complete(c.id, c.token, json.dumps(c.id))
    for c in claimed[7:]:
        assert await store.fail(c.id, c.token, "Boom: no", None)
    cancelled = await store.enqueue("a", {"i": 9}, queue="q2")
    assert await store.cancel(cancelled)
    waiting = await store.enqueue("b", {"i": 10}, queue="q1")
    return {
        "succeeded": [c.id for c in claimed[:7]],
        "dead": [c.id for c in claimed[7:]],
        "cancelled": [cancelled],
        "queued": [waiting],
        "all": [*ids, cancelled, waiting],
    }


async def test_jobs_filters_newest_first(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        made = await ended_jobs(store)
        everything = await store.jobs()
        assert [r.id for r in everything] == sorted(made["all"], reverse=True)
        assert [r.id for r in await store.jobs(limit=3)] == sorted(made["all"])[::-1][:3]
        assert {r.id for r in await store.jobs(state="dead")} == set(made["dead"])
        assert {r.id for r in await store.jobs(state="succeeded")} == set(made["succeeded"])
        both = await store.jobs(queue="q2", task="a")
        assert both
        assert all(r.queue == "q2" and r.task == "a" for r in both)
        assert {r.id for r in both} == {
            r.id for r in everything if r.queue == "q2" and r.task == "a"
        }
        assert await store.jobs(state="running") == []
        assert await store.jobs(limit=0) == []
        (dead, *_) = await store.jobs(state="dead")
        assert dead.error == "Boom: no"
        assert dead.worker == "tester"  # who ran the failed attempt, on every store
        for bad, error in (
            ({"state": "nope"}, ValueError),
            ({"limit": -1}, ValueError),
            ({"queue": 5}, TypeError),
            ({"task": ""}, ValueError),
        ):
            with pytest.raises(error):
                await store.jobs(**bad)


async def test_purge_by_state_in_batches(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # batches of 3 rows: 7 succeeded rows take three transactions
    monkeypatch.setattr("asyncworkers.store._sqlite.PURGE_BATCH", 3)
    monkeypatch.setattr("asyncworkers.store._postgres.PURGE_BATCH", 3)
    async with opened(store_factory) as store:
        made = await ended_jobs(store)
        assert await store.purge(time.time() - 3600) == 0  # none ended that long ago
        assert await store.purge(time.time() + 1, ["succeeded"]) == 7
        assert await store.jobs(state="succeeded") == []
        assert len(await store.jobs(state="dead")) == 2
        assert await store.purge(time.time() + 1) == 3  # dead and cancelled
        left = await store.jobs()
        assert [r.id for r in left] == made["queued"]  # a waiting job is never purged
        with pytest.raises(ValueError, match="ended jobs only"):
            await store.purge(time.time(), ["queued"])
        with pytest.raises(TypeError, match="collection of state names"):
            await store.purge(time.time(), "dead")  # type: ignore[arg-type]


async def test_a_manager_with_retention_deletes_old_ended_jobs(
    store_factory: StoreFactory,
) -> None:
    tasks = TaskRegistry()
    async with opened(store_factory) as store:
        made = await ended_jobs(store)
        await anyio.sleep(0.01)  # so that every ended job ended more than 5 ms ago
        async with Manager(store, tasks, retention=0.005, poll_interval=0.05) as manager:
            with no_hang():
                while sum((await store.counts()).values()) > 1:
                    await anyio.sleep(0.02)
            manager.pause()  # the one queued job is of a task this worker does not know
            manager.stop()
        assert [r.id for r in await store.jobs()] == made["queued"]
    with pytest.raises(ValueError, match="retention"):
        Manager(store, tasks, retention=0)
    with pytest.raises(TypeError, match="retention"):
        Manager(store, tasks, retention="7d")  # type: ignore[arg-type]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("NO_COLOR", "1")
    return Cli(capsys)


def test_jobs_show_purge_commands(store_factory: StoreFactory, run: Cli) -> None:
    url = store_factory.url
    made = query(store_factory, ended_jobs)
    listed = run("jobs", "--store", url, "--json", "--state", "dead")
    assert listed.returncode == 0, listed.stderr
    assert {r["id"] for r in json.loads(listed.stdout)} == set(made["dead"])
    some = json.loads(run("jobs", "--store", url, "--json", "--queue", "q1", "--limit", "2").stdout)
    assert len(some) == 2
    assert all(r["queue"] == "q1" for r in some)
    table = run("jobs", "--store", url, "--task", "b")
    assert table.returncode == 0, table.stderr
    assert "6 job(s), newest first" in table.stdout  # i = 0, 2, 4, 6, 8 and 10

    dead = made["dead"][0]
    shown = run("show", "--store", url, str(dead))
    assert shown.returncode == 0, shown.stderr
    for text in (f"Job {dead}", "dead", "1 of 3", "Boom: no", "tester"):
        assert text in shown.stdout, shown.stdout
    done = made["succeeded"][0]
    record = json.loads(run("show", "--store", url, str(done), "--json").stdout)
    assert (record["id"], record["state"], record["result"]) == (done, "succeeded", done)
    assert record["finished_at"] >= record["started_at"] >= record["enqueued_at"]
    missing = run("show", "--store", url, "999999")
    assert missing.returncode == 1
    assert "no job with id 999999" in missing.stderr

    purged = run("purge", "--store", url, "--older-than", "1h")
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.startswith("purged 0 job(s)")
    time.sleep(0.01)  # every job ended more than the 5 ms below ago
    purged = run("purge", "--store", url, "--older-than", "0.005s", "--state", "dead",
                 "--state", "cancelled")  # fmt: skip
    assert purged.stdout.startswith("purged 3 job(s) (dead, cancelled)"), purged.stdout
    counts = query(store_factory, lambda store: store.counts())
    assert (counts["succeeded"], counts["dead"], counts["cancelled"]) == (7, 0, 0)


def test_the_commands_in_a_subprocess(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    assert cli("enqueue", "--store", url, "echo").returncode == 0
    shown = cli("jobs", "--store", url)
    assert shown.returncode == 0, shown.stderr
    assert "1 job(s)" in shown.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["purge"], "--older-than"),
        (["purge", "--older-than", "soon"], "expected a time > 0"),
        (["purge", "--older-than=-7d"], "expected a time > 0"),
        (["purge", "--older-than", "-7d"], "durations must be positive"),
        (["purge", "--older-than", "7d", "--state", "queued"], "invalid choice"),
        (["jobs", "--state", "lost"], "invalid choice"),
        (["jobs", "--limit", "0"], "--limit"),
        (["show", "x"], "ID"),
        (["worker", "--tasks", TASKS, "--retention", "0"], "--retention"),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run: Cli, args: list[str], expected: str
) -> None:
    monkeypatch.setenv("ASYNCWORKERS_STORE", f"sqlite:///{tmp_path}/x.db")
    one_error_line(run(*args), expected)
