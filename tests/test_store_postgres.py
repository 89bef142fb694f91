"""PostgresStore against the real PostgreSQL: claims, fencing, leases, wake-ups, lost
connections, migrations and bad input. Each test has a schema of its own (tests/_pg.py)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

import asyncworkers as aw
from _helpers import no_hang
from _pg import PG_DSN, admin, new_schema_name, pg_schema_fixture, terminate
from asyncworkers.store import JobDead, StoreError, StoreUnavailable
from asyncworkers.store._jobs import new_job
from asyncworkers.store._pg_migrations import LATEST
from asyncworkers.store._postgres import PostgresStore
from asyncworkers.store._protocol import NewJob


@pytest_asyncio.fixture
async def dsn() -> AsyncIterator[str]:
    async for value in pg_schema_fixture():
        yield value


@pytest_asyncio.fixture
async def store(dsn: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(dsn) as s:
        yield s


async def expire_all(store: PostgresStore) -> None:
    """End every running lease now (instead of waiting for it)."""
    conn = await admin()
    try:
        await conn.execute(
            f"UPDATE \"{store.schema}\".jobs SET lease_until = now() - interval '1 second'"
            " WHERE state = 'running'"
        )
    finally:
        await conn.close()


async def raw_insert(store: PostgresStore, task: str, args_sql: str) -> int:
    """A row written behind the store's back (what a hostile or buggy producer leaves)."""
    conn = await admin()
    try:
        new_id: int = await conn.fetchval(
            f'INSERT INTO "{store.schema}".jobs (task, args) VALUES ($1, {args_sql}) RETURNING id',
            task,
        )
    finally:
        await conn.close()
    return new_id


# -- enqueue ---------------------------------------------------------------------------


async def test_enqueue_get_round_trip(store: PostgresStore) -> None:
    before = time.time()
    job_id = await store.enqueue("mail", {"to": "a@b", "n": [1, 2]}, priority=3, queue="q1")
    record = await store.get(job_id)
    assert record is not None
    assert (record.task, record.args, record.state, record.priority, record.queue) == (
        "mail",
        {"to": "a@b", "n": [1, 2]},
        "queued",
        3,
        "q1",
    )
    assert (record.attempts, record.max_attempts, record.result, record.error) == (0, 3, None, None)
    assert before - 5 < record.enqueued_at <= record.run_at < time.time() + 5
    assert await store.get(job_id + 1000) is None


async def test_key_is_idempotent_one_by_one_and_in_bulk(store: PostgresStore) -> None:
    first = await store.enqueue("t", {"a": 1}, key="k1")
    assert await store.enqueue("t", {"a": 2}, key="k1") == first
    assert await store.enqueue_many([new_job("t", key="k1")]) == [first]  # a batch of one
    jobs = [new_job("t", key="k1"), new_job("t"), new_job("t", key="k2"), new_job("t", key="k2")]
    ids = await store.enqueue_many(jobs)
    assert ids[0] == first
    assert ids[2] == ids[3] != ids[1]
    assert (await store.counts())["queued"] == 3


async def test_enqueue_many_keeps_input_order_across_chunks(store: PostgresStore) -> None:
    ids = await store.enqueue_many(new_job("t", {"i": i}) for i in range(12_000))
    assert ids == sorted(ids)
    assert len(set(ids)) == 12_000
    record = await store.get(ids[7_777])
    assert record is not None
    assert record.args == {"i": 7_777}


async def test_enqueue_many_is_all_or_none_across_chunks(store: PostgresStore) -> None:
    good = [new_job("t", {"i": i}) for i in range(11_000)]
    # a row the server refuses (text cannot hold NUL), in the third chunk of 5,000: built
    # behind NewJob's own checks (store._fields), so that it is the database that says no
    bad = object.__new__(NewJob)
    row = ("t\x00", "{}", 0, "default", None, 3, None)
    for name, value in zip(NewJob.__slots__, row, strict=True):
        object.__setattr__(bad, name, value)
    with pytest.raises(asyncpg.PostgresError):
        await store.enqueue_many([*good, bad])
    assert (await store.counts())["queued"] == 0


async def test_enqueue_bad_input_fails_at_the_call(store: PostgresStore) -> None:
    with pytest.raises(TypeError, match="must be a dict"):
        await store.enqueue("t", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not JSON"):
        await store.enqueue("t", {"x": object()})
    with pytest.raises(TypeError, match="item 1 is dict"):
        await store.enqueue_many([new_job("t"), {"task": "t"}])  # type: ignore[list-item]
    assert (await store.counts())["queued"] == 0


# -- claims ----------------------------------------------------------------------------


async def test_claim_by_priority_then_fifo(store: PostgresStore) -> None:
    ids = await store.enqueue_many(new_job("t", {"i": i}, priority=i % 3) for i in range(30))
    order: list[int] = []
    while batch := await store.claim(None, 7, 30, "w"):
        order.extend(c.id for c in batch)
    expected = sorted(ids, key=lambda i: (-((i - ids[0]) % 3), i))
    assert order == expected


async def test_claim_respects_queues_run_at_and_empty_lists(store: PostgresStore) -> None:
    a = await store.enqueue("t", queue="a")
    await store.enqueue("t", queue="b")
    await store.enqueue("t", queue="a", delay=3600)
    assert await store.claim([], 10, 30, "w") == []
    claimed = await store.claim(["a"], 10, 30, "w")
    assert [c.id for c in claimed] == [a]
    c = claimed[0]
    assert (c.task, c.args_json, c.queue, c.attempt, c.max_attempts) == ("t", "{}", "a", 1, 3)
    assert c.token >> 31 == 1  # the first claim (the low 31 bits are random)
    assert time.time() < c.lease_until < time.time() + 60
    assert [c.queue for c in await store.claim(None, 10, 30, "w")] == ["b"]


async def test_concurrent_claimers_never_share_a_job(dsn: str) -> None:
    async with PostgresStore(dsn) as producer:
        await producer.enqueue_many(new_job("t") for _ in range(600))
    stores = [PostgresStore(dsn) for _ in range(4)]
    for s in stores:
        await s.open()
    try:

        async def drain(s: PostgresStore, name: str) -> list[int]:
            got: list[int] = []
            while batch := await s.claim(None, 10, 30, name):
                got.extend(c.id for c in batch)
            return got

        with no_hang():
            results = await asyncio.gather(*(drain(s, f"w{i}") for i, s in enumerate(stores)))
    finally:
        for s in stores:
            await s.close()
    everything = [i for r in results for i in r]
    assert len(everything) == len(set(everything)) == 600


# -- fenced writes ---------------------------------------------------------------------


async def test_complete_is_fenced_by_the_claim_token(store: PostgresStore) -> None:
    job_id = await store.enqueue("t")
    (c,) = await store.claim(None, 1, 30, "w")
    assert not await store.complete(job_id, c.token + 1, '"wrong token"')
    assert await store.complete(job_id, c.token, '"done"')
    assert not await store.complete(job_id, c.token, '"twice"')
    record = await store.get(job_id)
    assert record is not None
    assert (record.state, record.result, record.attempts) == ("succeeded", "done", 1)
    assert await store.result(job_id) == "done"


async def test_many_completions_at_once_share_writes_and_stay_fenced(
    store: PostgresStore,
) -> None:
    await store.enqueue_many(new_job("t", {"i": i}) for i in range(200))
    claimed = await store.claim(None, 200, 30, "w")
    stale = claimed[0]
    assert await store.release(stale.id, stale.token)
    outcomes = await asyncio.gather(
        *(store.complete(c.id, c.token, json.dumps(c.id)) for c in claimed)
    )
    assert outcomes == [False] + [True] * 199
    counts = await store.counts()
    assert (counts["succeeded"], counts["queued"]) == (199, 1)
    record = await store.get(claimed[5].id)
    assert record is not None
    assert record.result == claimed[5].id


async def test_completions_of_cancelled_callers_are_still_written(dsn: str) -> None:
    """A caller cancelled while its completion waits for the shared write: the write is made
    all the same (at least once), and close() waits for it instead of dropping it."""
    store = PostgresStore(dsn)
    await store.open()
    await store.enqueue_many(new_job("t") for _ in range(50))
    claimed = await store.claim(None, 50, 30, "w")
    callers = [asyncio.create_task(store.complete(c.id, c.token, "1")) for c in claimed]
    await asyncio.sleep(0)  # each has queued its write; the shared write has not ended
    for task in callers:
        task.cancel()
    with no_hang():
        await store.close()
    assert all(task.cancelled() for task in callers)
    async with PostgresStore(dsn) as again:
        assert (await again.counts())["succeeded"] == 50


async def test_release_uncounts_the_attempt_and_fences_the_old_claim(
    store: PostgresStore,
) -> None:
    job_id = await store.enqueue("t")
    (first,) = await store.claim(None, 1, 30, "w")
    assert await store.release(job_id, first.token)
    assert not await store.release(job_id, first.token)
    (second,) = await store.claim(None, 1, 30, "w")
    assert second.attempt == 1
    assert second.token != first.token
    assert not await store.complete(job_id, first.token, "1")
    assert await store.heartbeat([(job_id, first.token), (job_id + 99, 1)], 30) == {
        job_id,
        job_id + 99,
    }
    assert await store.heartbeat([(job_id, second.token)], 30) == set()


async def test_a_claim_undone_by_a_server_crash_never_shares_its_token(
    store: PostgresStore,
) -> None:
    """Claims commit without waiting for the disk (durable_writes=False), so a server crash
    can undo one while its worker goes on; the next claim must not get the same token."""
    job_id = await store.enqueue("t")
    (lost,) = await store.claim(None, 1, 30, "w1")
    conn = await admin()
    try:  # what recovery leaves: the row as it was before the claim
        await conn.execute(
            f"UPDATE \"{store.schema}\".jobs SET state = 'queued', attempts = 0, claims = 0,"
            " nonce = 0, lease_until = NULL WHERE id = $1",
            job_id,
        )
    finally:
        await conn.close()
    (again,) = await store.claim(None, 1, 30, "w2")
    assert again.attempt == lost.attempt == 1
    assert again.token != lost.token
    assert not await store.complete(job_id, lost.token, '"from the undone claim"')
    assert await store.complete(job_id, again.token, '"ok"')


async def test_fail_retries_then_dead_letters(store: PostgresStore) -> None:
    job_id = await store.enqueue("t", max_attempts=2)
    (c1,) = await store.claim(None, 1, 30, "w")
    assert await store.fail(job_id, c1.token, "boom 1", time.time())
    (c2,) = await store.claim(None, 1, 30, "w")
    assert c2.attempt == 2
    # the worker asks for a retry, but the job is out of attempts: dead all the same
    assert await store.fail(job_id, c2.token, "boom 2", time.time())
    assert not await store.fail(job_id, c2.token, "late", None)
    (dead,) = await store.dead()
    assert (dead.id, dead.state, dead.error, dead.attempts) == (job_id, "dead", "boom 2", 2)
    with pytest.raises(JobDead, match="boom 2"):
        await store.result(job_id)
    assert await store.retry(job_id)
    assert not await store.retry(job_id)
    (c3,) = await store.claim(None, 1, 30, "w")
    assert c3.attempt == 1


async def test_fail_with_a_later_retry_waits_for_it(store: PostgresStore) -> None:
    job_id = await store.enqueue("t")
    (c,) = await store.claim(None, 1, 30, "w")
    assert await store.fail(job_id, c.token, "later", time.time() + 3600)
    assert await store.claim(None, 1, 30, "w") == []
    record = await store.get(job_id)
    assert record is not None
    assert (record.state, record.error) == ("queued", "later")


# -- leases ----------------------------------------------------------------------------


async def test_expired_leases_come_back_then_go_dead(store: PostgresStore) -> None:
    job_id = await store.enqueue("t", max_attempts=2)
    await store.claim(None, 1, 30, "w-lost")
    assert await store.requeue_expired() == 0  # a live lease stays
    await expire_all(store)
    assert await store.requeue_expired() == 1
    (again,) = await store.claim(None, 1, 30, "w2")
    assert again.attempt == 2  # the crash counted
    await expire_all(store)
    assert await store.requeue_expired() == 1
    record = await store.get(job_id)
    assert record is not None
    assert record.state == "dead"
    assert record.error is not None
    assert "lease expired" in record.error
    assert "w2" in record.error


async def test_an_expired_lease_nobody_took_over_still_completes(store: PostgresStore) -> None:
    job_id = await store.enqueue("t")
    (c,) = await store.claim(None, 1, 30, "w")
    await expire_all(store)
    assert await store.heartbeat([(job_id, c.token)], 30) == set()
    assert await store.complete(job_id, c.token, "1")


async def test_sync_heartbeat_from_a_thread(store: PostgresStore) -> None:
    job_id = await store.enqueue("t")
    other = await store.enqueue("t")
    claimed = {c.id: c for c in await store.claim(None, 2, 30, "w")}
    assert await store.release(other, claimed[other].token)
    beat = store.sync_heartbeat()
    lost: list[set[int]] = []
    thread = threading.Thread(
        target=lambda: lost.append(
            beat.beat([(job_id, claimed[job_id].token), (other, claimed[other].token)], 60)
        )
    )
    thread.start()
    await asyncio.to_thread(thread.join)
    assert lost == [{other}]
    record = await store.get(job_id)
    assert record is not None
    assert record.lease_until is not None
    assert record.lease_until > time.time() + 45
    # its connection killed: the next beat reconnects
    assert await terminate("heartbeat", store.schema) == 1
    assert await asyncio.to_thread(beat.beat, [(job_id, claimed[job_id].token)], 60) == set()
    beat.close()  # from the loop's thread: no loop may run here, it still closes
    beat.close()
    with pytest.raises(RuntimeError, match="closed"):
        beat.beat([(job_id, 1)], 60)


# -- wake-ups --------------------------------------------------------------------------


async def test_enqueue_elsewhere_wakes_an_idle_worker(dsn: str, store: PostgresStore) -> None:
    await store.wait_for_work(0.01)  # eat the wake-up of the start
    with no_hang():
        waiter = asyncio.create_task(store.wait_for_work(120))
        async with PostgresStore(dsn) as producer:
            await producer.enqueue("t")
            await waiter
        # its listening connection killed: it listens again, and is woken again
        assert await terminate("listen", store.schema) == 1
        await store.wait_for_work(0.01)
        await store.wait_for_work(0.01)
        waiter = asyncio.create_task(store.wait_for_work(120))
        async with PostgresStore(dsn) as producer:
            await producer.enqueue_many([new_job("t"), new_job("t")])
            await waiter


async def test_result_waits_for_the_outcome(store: PostgresStore) -> None:
    job_id = await store.enqueue("t")
    with no_hang():
        waiter = asyncio.create_task(store.result(job_id))
        (c,) = await store.claim(None, 1, 30, "w")
        assert await store.complete(job_id, c.token, '{"ok": true}')
        assert await waiter == {"ok": True}
    with pytest.raises(KeyError):
        await store.result(job_id + 1000)
    other = await store.enqueue("t")
    with pytest.raises(TimeoutError):
        await store.result(other, timeout=0.05)
    assert await store.cancel(other)
    with pytest.raises(aw.JobCancelled):
        await store.result(other)


# -- lost connections ------------------------------------------------------------------


async def test_pool_connections_killed_mid_use_are_replaced(store: PostgresStore) -> None:
    job_id = await store.enqueue("t")
    (c,) = await store.claim(None, 1, 30, "w")
    assert await terminate("worker", store.schema) >= 1
    # every call after the kill succeeds on a fresh connection, fencing intact
    assert await store.heartbeat([(job_id, c.token)], 30) == set()
    assert await terminate("worker", store.schema) >= 1
    assert await store.complete(job_id, c.token, '"after the kill"')
    assert await store.result(job_id) == "after the kill"
    assert await terminate("worker", store.schema) >= 1
    assert (await store.counts())["succeeded"] == 1


async def test_unreachable_server_names_host_and_port() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/test", connect_timeout=5)
    with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1\b") as caught:
        await store.open()
    assert caught.value.transient  # a server that may come up: a worker waits for it
    with pytest.raises(StoreError, match="not open"):
        await store.enqueue("t")
    await store.close()


async def test_unknown_database_names_host_and_port() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:5432/no_such_db_for_asyncworkers")
    with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:5432.*no_such_db") as caught:
        await store.open()
    assert not caught.value.transient  # a mistake: waiting does not fix it


def test_bad_options_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="postgresql://"):
        PostgresStore("mysql://x")
    with pytest.raises(ValueError, match="schema must be a plain SQL name"):
        PostgresStore(PG_DSN, schema='x"; DROP TABLE y; --')
    with pytest.raises(ValueError, match="schema must be a plain SQL name"):
        PostgresStore(PG_DSN + "?schema=a-b")
    with pytest.raises(ValueError, match="pool_size"):
        PostgresStore(PG_DSN, pool_size=1)
    with pytest.raises(ValueError, match="connect_timeout"):
        PostgresStore(PG_DSN, connect_timeout=0)
    with pytest.raises(ValueError, match="durable_writes in a PostgreSQL URL"):
        PostgresStore(PG_DSN + "?durable_writes=maybe")
    assert PostgresStore(PG_DSN + "?schema=abc").schema == "abc"
    assert PostgresStore(PG_DSN + "?schema=abc&durable_writes=true")._durable_writes
    assert not PostgresStore(PG_DSN + "?durable_writes=true", durable_writes=False)._durable_writes
    assert PostgresStore(PG_DSN).schema == "asyncworkers"


async def test_claim_bad_input(store: PostgresStore) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.claim(None, 0, 30, "w")
    with pytest.raises(ValueError, match="lease"):
        await store.claim(None, 1, 0, "w")


# -- hostile rows ----------------------------------------------------------------------


async def test_an_oversized_row_is_dead_lettered_at_claim_never_handed_out(
    store: PostgresStore,
) -> None:
    huge = await raw_insert(store, "t", "'{\"x\": \"' || repeat('a', 16100000) || '\"}'")
    small = await store.enqueue("t")
    claimed = await store.claim(None, 10, 30, "w")
    assert [c.id for c in claimed] == [small]
    record = await store.get(huge)
    assert record is not None
    assert record.state == "dead"
    assert record.error is not None
    assert "bytes, over the 16000000 limit" in record.error


async def test_malformed_json_is_handed_out_raw_and_shown_raw(store: PostgresStore) -> None:
    bad = await raw_insert(store, "t", "'{not json'")
    (c,) = await store.claim(None, 1, 30, "w")
    assert (c.id, c.args_json) == (bad, "{not json")
    record = await store.get(bad)
    assert record is not None
    assert record.args == "{not json"


# -- schema ----------------------------------------------------------------------------


async def test_one_store_opened_twice_at_once_has_one_pool(dsn: str) -> None:
    store = PostgresStore(dsn)
    await asyncio.gather(store.open(), store.open())
    try:
        await store.enqueue("t")
    finally:
        await store.close()
        await store.close()
    conn = await admin()
    try:  # nothing leaked: every connection of the store ends (its backend exits soon after)
        with no_hang():
            while await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE '%:' || $1",
                store.schema,
            ):
                await asyncio.sleep(0.01)
    finally:
        await conn.close()


async def test_workers_starting_at_once_migrate_once(dsn: str) -> None:
    stores = [PostgresStore(dsn) for _ in range(5)]
    await asyncio.gather(*(s.open() for s in stores))
    for s in stores:
        await s.close()
    conn = await admin()
    try:
        rows = await conn.fetch(
            f'SELECT version FROM "{stores[0].schema}".schema_version ORDER BY version'
        )
        assert [r["version"] for r in rows] == list(range(1, LATEST + 1))
        await conn.execute(
            f'INSERT INTO "{stores[0].schema}".schema_version VALUES ($1, $2)', LATEST + 1, "x"
        )
    finally:
        await conn.close()
    with pytest.raises(RuntimeError, match="newer than this asyncworkers knows"):
        await PostgresStore(dsn).open()


async def test_schemas_do_not_see_each_other(dsn: str) -> None:
    other = new_schema_name()
    async with PostgresStore(dsn) as a, PostgresStore(PG_DSN, schema=other) as b:
        try:
            await a.enqueue("t")
            assert await b.claim(None, 10, 30, "w") == []
            assert (await b.counts())["queued"] == 0
        finally:
            conn = await admin()
            await conn.execute(f'DROP SCHEMA "{other}" CASCADE')
            await conn.close()


# -- people and tools ------------------------------------------------------------------


async def test_counts_dead_cancel_purge(store: PostgresStore) -> None:
    ids = await store.enqueue_many(
        [new_job("t", queue="a"), new_job("t", queue="a"), new_job("t", queue="b")]
    )
    assert await store.counts() == {
        "queued": 3,
        "running": 0,
        "succeeded": 0,
        "dead": 0,
        "cancelled": 0,
    }
    assert await store.cancel(ids[1])
    assert not await store.cancel(ids[1])
    oldest = await store.oldest_waiting()
    assert oldest is not None
    assert oldest.id == ids[0]
    (c,) = await store.claim(["a"], 1, 30, "w")
    assert not await store.cancel(c.id)  # running: it finishes
    assert await store.fail(c.id, c.token, "x", None)
    per_queue = await store.queue_counts()
    assert per_queue["a"]["dead"] == 1
    assert per_queue["a"]["cancelled"] == 1
    assert per_queue["b"]["queued"] == 1
    assert (await store.counts("b"))["queued"] == 1
    assert await store.purge(time.time() - 3600) == 0
    assert await store.purge(time.time() + 1) == 2
    assert await store.get(ids[0]) is None
    assert await store.counts() == {
        "queued": 1,
        "running": 0,
        "succeeded": 0,
        "dead": 0,
        "cancelled": 0,
    }


async def test_an_idle_manager_opens_its_heartbeat_connection_before_any_claim(dsn: str) -> None:
    """Far from the database (200 ms), opening a connection costs about a second: the first
    renewal must not pay for it, or a short lease runs out under a job that still runs
    (seen in tests/test_scale_hosts.py with 2 s leases)."""
    from asyncworkers.store._tasks import TaskRegistry

    schema = dsn.rsplit("schema=", 1)[1]
    async with PostgresStore(dsn) as store, aw.store.Manager(store, TaskRegistry(), lease=3):
        conn = await admin()
        try:
            with no_hang():
                while not await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                    f"asyncworkers-heartbeat:{schema}",
                ):
                    await asyncio.sleep(0.02)
        finally:
            await conn.close()
        assert await store.counts() == dict.fromkeys(aw.store.STATES, 0)  # nothing claimed


@pytest.mark.parametrize("outcome", ["succeed", "fail"])
async def test_a_write_applied_whose_reply_was_lost_counts_once_retried(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    """An outcome reached the server, then its reply and every retry were lost, so the store
    raised StoreUnavailable. The Manager writes it again once the server answers; that write
    must be accepted (the row already holds it), not read as fenced out. Before the fix the
    Manager counted a lease loss while the row said succeeded (issue 17.1)."""
    from asyncworkers.store import Manager, TaskRegistry, _postgres
    from asyncworkers.store._pg_connect import unavailable, with_retries

    real = with_retries
    lost: list[bool] = []

    async def reply_lost(target: Any, op: Any, **options: Any) -> Any:
        result = await real(target, op, **options)
        if "again" in options and not lost:  # the first write about a claim
            lost.append(options["again"])
            raise unavailable(target, ConnectionResetError("the reply was lost"))
        return result

    monkeypatch.setattr(_postgres, "with_retries", reply_lost)
    tasks = TaskRegistry()

    @tasks.task("t", retry=aw.Retry(attempts=1))
    async def t() -> str:
        if outcome == "fail":
            raise ValueError("no")
        return "done"

    job_id = await tasks.enqueue(store, "t")
    async with Manager(store, tasks, poll_interval=0.05) as manager:
        with no_hang():
            while (await store.counts())["running"] or not lost:
                await asyncio.sleep(0.01)
            while manager.held():
                await asyncio.sleep(0.01)
    m = manager.metrics()
    counts = await store.counts()
    assert lost == [False]  # the first write was a plain one, and it was applied
    assert m.lease_losses == 0
    if outcome == "succeed":
        assert (m.succeeded, counts["succeeded"]) == (1, 1)
        assert await store.result(job_id) == "done"
    else:
        assert (m.dead, counts["dead"]) == (1, 1)
