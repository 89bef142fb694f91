"""Jobs that wait for a later time never slow a claim down (issue 17 item 5, issue 14 item 6).

Queued rows are split into due and scheduled (``run_at`` in the future when written); the
claim walks an index of due rows only, and first moves the scheduled rows that have come
due into it. Checked here on both stores: the behaviour (delayed and retried jobs are
claimed once due, in priority order), the query plans (the claim uses the index made for
it and reads no delayed row), SQLite's work per claim (virtual machine steps, repeatable)
with and without 20,000 delayed rows, and the upgrade of a store made by the old schema.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import asyncworkers as aw
from _pg import admin, pg_schema_fixture
from _store_pg import PostgresFactory
from _store_support import SQLiteFactory, StoreFactory, opened
from asyncworkers.store import _pg_migrations, _sqlite, _sqlite_schema
from asyncworkers.store._jobs import new_job
from asyncworkers.store._pg_migrations import LATEST, quote_ident
from asyncworkers.store._postgres import PostgresStore
from asyncworkers.store._sqlite import SQLiteStore

LATER = 3600.0
DELAYED = 20_000


async def backdate(factory: StoreFactory) -> None:
    """Move every queued job's run_at an hour back, as if that hour had passed (the
    scheduled flag is left as it was: making such rows claimable is the claim's job)."""
    if isinstance(factory, SQLiteFactory):
        with sqlite3.connect(factory.path) as lite:
            lite.execute("UPDATE aw_jobs SET run_at = run_at - 7200 WHERE state = 'queued'")
        return
    assert isinstance(factory, PostgresFactory)
    conn = await admin()
    try:
        await conn.execute(
            f"UPDATE {quote_ident(factory.schema)}.jobs SET run_at = run_at - interval '2 hours'"
            " WHERE state = 'queued'"
        )
    finally:
        await conn.close()


async def claim_tasks(store: aw.store.Store, limit: int) -> list[str]:
    return [c.task for c in await store.claim(None, limit, 30.0, "w")]


# -- behaviour, on every store --------------------------------------------------------------


async def test_a_delayed_job_is_claimed_once_due_before_lower_priorities(
    store_factory: StoreFactory,
) -> None:
    async with opened(store_factory) as store:
        await store.enqueue("later", priority=9, delay=LATER)
        await store.enqueue("now-1", priority=0)
        assert await claim_tasks(store, 5) == ["now-1"]
        await store.enqueue("now-2", priority=0)
        await store.enqueue("now-3", priority=0)
        await backdate(store_factory)
        # the job that came due outranks the due ones of lower priority, at the first claim
        assert await claim_tasks(store, 1) == ["later"]
        assert await claim_tasks(store, 5) == ["now-2", "now-3"]


async def test_a_retry_waits_out_its_backoff_then_runs(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        await store.enqueue("flaky")
        (claimed,) = await store.claim(None, 1, 30.0, "w")
        assert await store.fail(claimed.id, claimed.token, "E", time.time() + LATER)
        assert await claim_tasks(store, 5) == []
        await backdate(store_factory)
        (again,) = await store.claim(None, 1, 30.0, "w")
        assert (again.id, again.attempt) == (claimed.id, 2)
        # a retry due at once (no backoff) is claimable at once
        assert await store.fail(again.id, again.token, "E", time.time() - 1)
        assert await claim_tasks(store, 5) == ["flaky"]


async def test_released_and_expired_jobs_are_due_at_once(store_factory: StoreFactory) -> None:
    async with opened(store_factory) as store:
        await store.enqueue("a", delay=LATER)
        await store.enqueue("b", delay=LATER)
        await backdate(store_factory)
        first, _ = await store.claim(None, 2, 30.0, "w")
        assert await store.release(first.id, first.token)
        await store_factory.expire_leases(store)
        assert await store.requeue_expired() == 1
        assert sorted(await claim_tasks(store, 5)) == ["a", "b"]


async def test_many_come_due_at_once(store_factory: StoreFactory) -> None:
    """More rows due than one staging step moves (PostgreSQL stages 1000 at a time)."""
    async with opened(store_factory) as store:
        await store.enqueue_many(
            [new_job("later", {"i": i}, priority=1, delay=LATER) for i in range(2500)]
        )
        await store.enqueue("now", priority=0)
        await backdate(store_factory)
        got: list[aw.store.Claimed] = []
        while batch := await store.claim(None, 400, 30.0, "w"):
            got += batch
        assert [c.task for c in got] == ["later"] * 2500 + ["now"]
        later = [json.loads(c.args_json)["i"] for c in got[:-1]]
        assert later == list(range(2500))  # FIFO within the priority


# -- SQLite: the plan and the work of one claim ----------------------------------------------


def _statements_of_a_claim(store: SQLiteStore) -> list[str]:
    """The statements one claim runs (as SQLite expanded them, values bound)."""
    seen: list[str] = []
    conn = store._db._conn
    assert conn is not None
    conn.set_trace_callback(seen.append)
    return seen


async def test_sqlite_claim_plans_use_their_indexes(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "jobs.db") as store:
        await store.enqueue_many([new_job("later", priority=5, delay=LATER) for _ in range(100)])
        await store.enqueue("now")
        seen = _statements_of_a_claim(store)
        assert await claim_tasks(store, 5) == ["now"]
        await store.claim(["default", "other"], 5, 30.0, "w")
        store._db._conn.set_trace_callback(None)  # type: ignore[union-attr]
    plans: dict[str, list[str]] = {}
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        conn.execute("ANALYZE")  # the planner's choice must hold with statistics too
        for sql in seen:
            if sql.startswith("UPDATE"):
                rows = conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
                plans[sql] = [row[3] for row in rows]
    stage = [p for s, p in plans.items() if "SET scheduled = 0" in s]
    claims = [p for s, p in plans.items() if "SET state = 'running'" in s]
    assert stage, plans
    assert claims, plans
    for plan in stage:
        assert plan == ["SEARCH aw_jobs USING INDEX aw_jobs_scheduled (run_at<?)"], plan
    for plan in claims:
        assert any("USING INDEX aw_jobs_ready" in step for step in plan), plan
        assert not any(step.startswith("SCAN aw_jobs") and "INDEX" not in step for step in plan)


def _vm_steps_of_a_claim(path: Path) -> int:
    """SQLite virtual machine steps of one claim (repeatable, whatever the machine's load)."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.set_progress_handler(count, 1)
        conn.execute("BEGIN IMMEDIATE")
        got = _sqlite._claim(conn, None, 10, 30.0, "w")
        conn.execute("ROLLBACK")
    assert [c.task for c in got] == ["now"] * 10
    return steps


async def test_sqlite_claim_work_does_not_grow_with_delayed_jobs(tmp_path: Path) -> None:
    async def made(name: str, delayed: int) -> Path:
        path = tmp_path / name
        async with SQLiteStore(path) as store:
            jobs = [new_job("later", priority=5, delay=LATER) for _ in range(delayed)]
            await store.enqueue_many(jobs + [new_job("now", priority=0) for _ in range(50)])
        return path

    empty = _vm_steps_of_a_claim(await made("empty.db", 0))
    loaded = _vm_steps_of_a_claim(await made("loaded.db", DELAYED))
    assert loaded <= 1.5 * empty, (empty, loaded)


# -- PostgreSQL: the plans -------------------------------------------------------------------


@pytest_asyncio.fixture
async def pg_dsn() -> AsyncIterator[str]:
    async for value in pg_schema_fixture():
        yield value


def _scans(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if node.get("Relation Name") == "jobs" and node["Node Type"] != "ModifyTable":
        yield node
    for child in node.get("Plans", []):
        yield from _scans(child)


async def _explain(
    conn: Any, sql: str, types: str, args: str, *, runs: int = 5
) -> list[dict[str, Any]]:
    """The scans of *sql*'s plan, as run (ANALYZE, rolled back), after five runs of the
    prepared statement, so that the plan checked is the one a pooled connection settles on
    (PostgreSQL may switch a prepared statement to a generic plan from the sixth run)."""
    await conn.execute(f"PREPARE claim_check({types}) AS {sql}")
    try:
        async with conn.transaction():
            for _ in range(runs):
                await conn.execute(f"EXPLAIN (ANALYZE) EXECUTE claim_check({args})")
            text = await conn.fetchval(
                f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE claim_check({args})"
            )
            raise _Rollback(json.loads(text)[0]["Plan"])
    except _Rollback as plan:
        return list(_scans(plan.args[0]))
    finally:
        await conn.execute("DEALLOCATE claim_check")


class _Rollback(Exception):
    pass


def _rows_read(scan: dict[str, Any]) -> int:
    return int((scan["Actual Rows"] + scan.get("Rows Removed by Filter", 0)) * scan["Actual Loops"])


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "analyzed"])
@pytest.mark.parametrize("delayed", [10_000, DELAYED])
async def test_postgres_claim_plans_use_their_indexes(
    pg_dsn: str, analyzed: bool, delayed: int
) -> None:
    """(10,000 delayed and 600 due rows, analyzed, is where a generic plan once read the
    whole table to stage nothing.)"""
    async with PostgresStore(pg_dsn) as store:
        await store.enqueue_many(
            [new_job("later", priority=5, delay=LATER) for _ in range(delayed)]
            + [new_job("now", priority=0) for _ in range(600)]
        )
        conn = await admin()
        try:
            t = f"{quote_ident(store.schema)}.jobs"
            if analyzed:
                await conn.execute(f"ANALYZE {t}")
            for name, value in store._write_settings().items():  # as the worker's pool
                await conn.execute(f"SET {name} = {value}")
            sql = store._sql
            limit = 10
            checks = [
                (sql.claim_any, "int, float8, text, int", f"{limit}, 30, 'w', 1000000"),
                (
                    sql.claim_queues,
                    "int, float8, text, int, text[]",
                    f"{limit}, 30, 'w', 1000000, ARRAY['default']",
                ),
            ]
            for statement, types, args in checks:
                scans = await _explain(conn, statement, types, args)
                indexes = {s.get("Index Name") for s in scans}
                assert {s["Node Type"] for s in scans} <= {"Index Scan", "Index Only Scan"}
                assert "jobs_ready" in indexes, scans
                assert indexes <= {"jobs_ready", "jobs_pkey", "jobs_scheduled"}, scans
                # the claimed rows, their pkey lookups and one probe of the scheduled ones
                assert sum(_rows_read(s) for s in scans) <= 2 * limit + 1, scans
            # 300 scheduled rows come due: the claim stages them by primary key lookups
            await conn.execute(
                f"UPDATE {t} SET run_at = now() - interval '1 second' WHERE id IN"
                f" (SELECT id FROM {t} WHERE scheduled ORDER BY id DESC LIMIT 300)"
            )
            statement, types, args = checks[0]
            scans = await _explain(conn, statement, types, args, runs=0)
            assert {s["Node Type"] for s in scans} <= {"Index Scan", "Index Only Scan"}
            assert {s.get("Index Name") for s in scans} <= {
                "jobs_ready",
                "jobs_pkey",
                "jobs_scheduled",
            }, scans
            assert sum(_rows_read(s) for s in scans) <= 3 * 300 + 2 * limit, scans
        finally:
            await conn.close()


def _factory_of(store: PostgresStore) -> PostgresFactory:
    factory = PostgresFactory()
    factory.schema = store.schema
    return factory


# -- upgrading a store made by the old schema ------------------------------------------------


async def test_sqlite_store_of_schema_1_is_upgraded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "jobs.db"
    with monkeypatch.context() as patch:
        patch.setattr(_sqlite, "MIGRATIONS", _sqlite_schema.MIGRATIONS[:1])
        async with SQLiteStore(path):
            pass
    now = time.time()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        conn.executemany(
            "INSERT INTO aw_jobs (task, args, priority, enqueued_at, run_at)"
            " VALUES (?, '{}', ?, ?, ?)",
            [("later", 5, now, now + LATER), ("now", 0, now, now - 1)],
        )
    async with SQLiteStore(path) as store:
        assert await claim_tasks(store, 5) == ["now"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(_sqlite_schema.MIGRATIONS)
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"aw_jobs_ready", "aw_jobs_scheduled"} <= names
        assert "aw_jobs_waiting" not in names
    factory = SQLiteFactory(tmp_path)
    await backdate(factory)
    async with SQLiteStore(path) as store:
        assert await claim_tasks(store, 5) == ["later"]


async def test_postgres_store_of_schema_1_is_upgraded(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(_pg_migrations, "MIGRATIONS", _pg_migrations.MIGRATIONS[:1])
        patch.setattr(_pg_migrations, "LATEST", 1)
        async with PostgresStore(pg_dsn) as old:
            schema = old.schema
    t = f"{quote_ident(schema)}.jobs"
    conn = await admin()
    try:
        await conn.execute(
            f"INSERT INTO {t} (task, priority, run_at) VALUES"
            " ('later', 5, now() + interval '1 hour'), ('now', 0, now() - interval '1 second')"
        )
        async with PostgresStore(pg_dsn) as store:
            assert await claim_tasks(store, 5) == ["now"]
            versions = await conn.fetch(
                f"SELECT version FROM {quote_ident(schema)}.schema_version ORDER BY version"
            )
            assert [r[0] for r in versions] == list(range(1, LATEST + 1))
            await backdate(_factory_of(store))
            assert await claim_tasks(store, 5) == ["later"]
    finally:
        await conn.close()
