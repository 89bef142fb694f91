"""The store protocol's rules, on every store (``store_factory``: tests/_store_support.py).

Claim order, fencing by claim token, release without counting an attempt, lease expiry,
idempotency keys, the dead letters and the read side: what the Manager relies on.
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

import asyncworkers as aw
from _helpers import no_hang
from _store_support import StoreFactory, opened
from asyncworkers.store import NewJob, Store, new_job

W = "test-worker"


async def expire_all(store: Store) -> int:
    """Wait until the (tiny) leases taken so far have run out, and requeue them."""
    with no_hang():
        while not (count := await store.requeue_expired()):
            await anyio.sleep(0.01)
    return count


async def test_enqueue_and_get(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        job_id = await store.enqueue("t", {"x": [1, "two"]}, priority=3, queue="q", key="k1")
        record = await store.get(job_id)
        assert record is not None
        assert (record.task, record.args, record.state) == ("t", {"x": [1, "two"]}, "queued")
        assert (record.priority, record.queue, record.key) == (3, "q", "k1")
        assert (record.attempts, record.max_attempts, record.result, record.error) == (
            0, 3, None, None,
        )  # fmt: skip
        assert record.started_at is None
        assert record.finished_at is None
        assert await store.get(job_id + 1000) is None
        assert await store.counts() == {
            "queued": 1, "running": 0, "succeeded": 0, "dead": 0, "cancelled": 0,
        }  # fmt: skip
        assert (await store.counts("other"))["queued"] == 0


async def test_priority_then_fifo(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        plan = [0, 5, 0, 9, 5, 0, -1, 9]
        ids = await store.enqueue_many(
            [new_job("t", {"i": i}, priority=p) for i, p in enumerate(plan)]
        )
        order: list[int] = []
        while claimed := await store.claim(None, 3, 30, W):
            order += [c.id for c in claimed]
        expected = sorted(ids, key=lambda i: (-plan[ids.index(i)], i))
        assert order == expected


async def test_claim_skips_future_jobs_and_other_queues(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        await store.enqueue("later", delay=3600)
        other = await store.enqueue("elsewhere", queue="b")
        now = await store.enqueue("now", queue="a")
        assert [c.id for c in await store.claim(["a"], 10, 30, W)] == [now]
        assert [c.id for c in await store.claim(None, 10, 30, W)] == [other]
        assert await store.claim(None, 10, 30, W) == []
        assert await store.claim([], 10, 30, W) == []


async def test_claimed_fields(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        job_id = await store.enqueue("t", {"a": 1}, priority=2, queue="q", max_attempts=4)
        (claimed,) = await store.claim(None, 5, 30, W)
        assert (claimed.id, claimed.task, claimed.queue, claimed.priority) == (job_id, "t", "q", 2)
        assert claimed.args_json.replace(" ", "") == '{"a":1}'
        assert (claimed.attempt, claimed.max_attempts) == (1, 4)
        record = await store.get(job_id)
        assert record is not None
        assert record.state == "running"
        assert record.attempts == 1
        assert record.worker == W
        assert record.lease_until is not None
        assert record.lease_until == pytest.approx(claimed.lease_until)


async def test_each_claim_is_handed_out_once(store_factory: StoreFactory) -> None:
    """Several connections claiming at once share the jobs: none twice, none left."""
    async with opened(store_factory) as setup:
        ids = await setup.enqueue_many([new_job("t") for _ in range(300)])
    got: list[list[int]] = [[], [], []]

    async def claimer(i: int) -> None:
        async with opened(store_factory) as store:
            while claimed := await store.claim(None, 7, 30, f"w{i}"):
                got[i] += [c.id for c in claimed]

    with no_hang():
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(claimer, i)
    everything = got[0] + got[1] + got[2]
    assert sorted(everything) == sorted(ids)


async def test_complete_and_fencing(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        job_id = await store.enqueue("t")
        (first,) = await store.claim(None, 1, 0.001, W)
        assert await expire_all(store) == 1
        (second,) = await store.claim(None, 1, 30, "other")
        assert second.id == job_id
        assert second.attempt == 2
        assert second.token != first.token
        # The first claim is stale: its writes and heartbeats change nothing.
        assert await store.heartbeat([(job_id, first.token)], 30) == {job_id}
        assert not await store.complete(job_id, first.token, '"late"')
        assert not await store.fail(job_id, first.token, "late", None)
        assert not await store.release(job_id, first.token)
        assert await store.heartbeat([(job_id, second.token)], 30) == set()
        assert await store.complete(job_id, second.token, '{"ok":true}')
        assert not await store.complete(job_id, second.token, '"twice"')
        record = await store.get(job_id)
        assert record is not None
        assert (record.state, record.result, record.attempts) == ("succeeded", {"ok": True}, 2)
        assert record.finished_at is not None
        assert await store.result(job_id) == {"ok": True}


async def test_release_does_not_count_the_attempt(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        job_id = await store.enqueue("t", max_attempts=1)
        (first,) = await store.claim(None, 1, 30, W)
        assert await store.release(job_id, first.token)
        record = await store.get(job_id)
        assert record is not None
        assert (record.state, record.attempts) == ("queued", 0)
        (again,) = await store.claim(None, 1, 30, W)
        assert again.attempt == 1
        assert again.token != first.token
        assert not await store.complete(job_id, first.token, "1")  # the released claim
        assert await store.complete(job_id, again.token, "1")


async def test_fail_retries_then_dead(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        job_id = await store.enqueue("t", max_attempts=2)
        (c1,) = await store.claim(None, 1, 30, W)
        far = 4_000_000_000.0
        assert await store.fail(job_id, c1.token, "E: one", far)
        record = await store.get(job_id)
        assert record is not None
        assert (record.state, record.error, record.run_at) == ("queued", "E: one", far)
        assert await store.claim(None, 1, 30, W) == []  # waits for its backoff
        assert await store.retry(job_id) is False  # not dead
        # Attempt 2 of 2 fails: a retry time cannot revive it.
        job_2 = await store.enqueue("t", max_attempts=2)
        (c2,) = await store.claim(None, 1, 30, W)
        assert c2.id == job_2
        assert await store.fail(job_2, c2.token, "E: a", 0.0)
        (c3,) = await store.claim(None, 1, 30, W)
        assert (c3.id, c3.attempt) == (job_2, 2)
        assert await store.fail(job_2, c3.token, "E: b", 0.0)
        record = await store.get(job_2)
        assert record is not None
        assert (record.state, record.error, record.attempts) == ("dead", "E: b", 2)
        assert [r.id for r in await store.dead()] == [job_2]
        with pytest.raises(aw.store.JobDead, match="E: b"):
            await store.result(job_2)


async def test_fail_without_retry_is_dead(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        job_id = await store.enqueue("t", max_attempts=5)
        (claimed,) = await store.claim(None, 1, 30, W)
        assert await store.fail(job_id, claimed.token, "rejected, never run: bad", None)
        assert (await store.counts())["dead"] == 1
        assert await store.retry(job_id)
        record = await store.get(job_id)
        assert record is not None
        assert (record.state, record.attempts) == ("queued", 0)
        assert [c.id for c in await store.claim(None, 1, 30, W)] == [job_id]


async def test_expired_lease_out_of_attempts_is_dead(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        job_id = await store.enqueue("t", max_attempts=1)
        await store.claim(None, 1, 0.001, "crashed")
        assert await expire_all(store) == 1
        record = await store.get(job_id)
        assert record is not None
        assert record.state == "dead"
        assert record.error is not None
        assert "lease expired" in record.error


async def test_idempotency_key(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        a = await store.enqueue("t", {"n": 1}, key="order-1")
        assert await store.enqueue("t", {"n": 2}, key="order-1") == a
        b = await store.enqueue("t", key="order-2")
        assert b != a
        ids = await store.enqueue_many(
            [new_job("t", key="order-1"), new_job("t"), new_job("t", key="order-3"),
             new_job("t", key="order-3")]
        )  # fmt: skip
        assert ids[0] == a
        assert ids[2] == ids[3]
        assert len({a, b, ids[1], ids[2]}) == 4
        record = await store.get(a)
        assert record is not None
        assert record.args == {"n": 1}  # the first job stands
        assert sum((await store.counts()).values()) == 4


async def test_enqueue_many_keeps_order(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        jobs = [new_job("t", {"i": i}) for i in range(1000)]
        ids = await store.enqueue_many(jobs)
        assert len(set(ids)) == 1000
        for i in (0, 499, 999):
            record = await store.get(ids[i])
            assert record is not None
            assert record.args == {"i": i}
        assert await store.enqueue_many([]) == []


async def test_result_waits_for_the_end(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        job_id = await store.enqueue("t")
        with pytest.raises(TimeoutError):
            await store.result(job_id, timeout=0.05)
        with pytest.raises(KeyError):
            await store.result(job_id + 99, timeout=1)

        async def finish() -> None:
            (claimed,) = await store.claim(None, 1, 30, W)
            await store.complete(claimed.id, claimed.token, "[1,2]")

        with no_hang():
            async with anyio.create_task_group() as tg:
                tg.start_soon(finish)
                assert await store.result(job_id) == [1, 2]


async def test_cancel_and_purge(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        waiting = await store.enqueue("t")
        running = await store.enqueue("t")
        assert await store.cancel(waiting)
        assert not await store.cancel(waiting)
        with pytest.raises(aw.JobCancelled):
            await store.result(waiting)
        (claimed,) = await store.claim(None, 1, 30, W)
        assert claimed.id == running
        assert not await store.cancel(running)  # a running job finishes
        assert await store.complete(running, claimed.token, "null")
        assert await store.purge(older_than=0) == 0
        assert await store.purge(older_than=4_000_000_000) == 2
        assert sum((await store.counts()).values()) == 0


async def test_read_side_for_status(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        assert await store.oldest_waiting() is None
        first = await store.enqueue("t", queue="a")
        await store.enqueue("t", queue="b", priority=9)
        await store.enqueue("t", queue="b", delay=3600)
        oldest = await store.oldest_waiting()
        assert oldest is not None
        assert oldest.id == first
        per_queue = await store.queue_counts()
        assert per_queue["a"]["queued"] == 1
        assert per_queue["b"]["queued"] == 2
        assert set(per_queue["b"]) == set(aw.store.STATES)


async def test_sync_heartbeat_from_a_thread(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        job_id = await store.enqueue("t")
        (claimed,) = await store.claim(None, 1, 5, W)
        beat = store.sync_heartbeat()
        out: dict[str, Any] = {}

        def in_thread() -> None:
            try:
                out["kept"] = beat.beat([(job_id, claimed.token)], 3600)
                out["stale"] = beat.beat([(job_id, claimed.token + 1)], 3600)
            finally:
                beat.close()

        thread = threading.Thread(target=in_thread)
        thread.start()
        with no_hang():
            while thread.is_alive():
                await anyio.sleep(0.01)
        assert out == {"kept": set(), "stale": {job_id}}
        record = await store.get(job_id)
        assert record is not None
        assert record.lease_until is not None
        assert record.lease_until > claimed.lease_until + 1000


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"args": {"x": object()}}, TypeError, "not JSON"),
        ({"args": {"x": float("nan")}}, TypeError, "not JSON"),
        ({"args": [1, 2]}, TypeError, "must be a dict"),
        ({"args": {"x": "y" * 1_000_001}}, ValueError, "limit"),
        ({"max_attempts": 0}, ValueError, "max_attempts"),
        ({"priority": "high"}, TypeError, "priority"),
        ({"delay": 1, "run_at": 2.0}, ValueError, "not both"),
        ({"delay": -1}, ValueError, "delay"),
        ({"queue": ""}, ValueError, "queue"),
    ],
)
async def test_bad_input_fails_at_enqueue(
    store_factory: StoreFactory, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    async with opened(store_factory) as store:
        with pytest.raises(error, match=match):
            await store.enqueue("t", **kwargs)
        with pytest.raises(TypeError, match="NewJob"):
            await store.enqueue_many([("t", {})])  # type: ignore[list-item]
        assert sum((await store.counts()).values()) == 0


def test_new_job_is_a_value() -> None:
    job = new_job("t", {"a": 1}, delay=10)
    assert isinstance(job, NewJob)
    assert job.run_at is not None
