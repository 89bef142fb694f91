"""The PostgreSQL entry of the store-agnostic tests (tests/_store_support.py registers it as
``STORE_FACTORIES["postgresql"]``): a fresh schema of the real server per test."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncworkers as aw
from _pg import PG_DSN, admin, new_schema_name
from asyncworkers.store._postgres import PostgresStore

T = TypeVar("T")


def _blocking(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to its end from sync code, on a thread of its own (the caller's
    thread may hold an event loop of pytest-asyncio's that must not be touched)."""
    out: list[T] = []
    errors: list[BaseException] = []

    def main() -> None:
        try:
            out.append(asyncio.run(fn()))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=main)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return out[0]


class PostgresFactory:
    """One schema of the PostgreSQL at 127.0.0.1:5432, made for one test."""

    name = "postgresql"

    def __init__(self) -> None:
        self.schema = new_schema_name()
        self.url = f"{PG_DSN}?schema={self.schema}"

    def make(self) -> aw.store.Store:
        return PostgresStore(self.url)

    async def insert_raw(self, store: aw.store.Store, task: str, args_text: str) -> int:
        conn = await admin()
        try:
            new_id: int = await conn.fetchval(
                f'INSERT INTO "{self.schema}".jobs (task, args) VALUES ($1, $2) RETURNING id',
                task,
                args_text,
            )
        finally:
            await conn.close()
        return new_id

    async def expire_leases(self, store: aw.store.Store) -> None:
        conn = await admin()
        try:
            await conn.execute(
                f"UPDATE \"{self.schema}\".jobs SET lease_until = now() - interval '1 second'"
                " WHERE state = 'running'"
            )
        finally:
            await conn.close()

    async def drop(self) -> None:
        conn = await admin()
        try:
            # worker processes of the test may still be connected: end them first
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name LIKE '%:' || $1 AND pid <> pg_backend_pid()",
                self.schema,
            )
            await conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            await conn.close()


@contextmanager
def postgres_factory(tmp_path: Path) -> Iterator[PostgresFactory]:
    factory = PostgresFactory()
    _blocking(lambda: _check_reachable())
    try:
        yield factory
    finally:
        _blocking(factory.drop)


async def _check_reachable() -> None:
    conn = await admin()  # fails the test, naming the server and how to start it
    await conn.close()
