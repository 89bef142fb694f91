"""PostgreSQL for the tests: the real server at 127.0.0.1:5432, one fresh schema per test.

A test that needs PostgreSQL FAILS (never skips) when the server cannot be reached, with the
command that starts it; ``.ci/run`` starts it before the tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

PG_DSN = os.environ.get("ASYNCWORKERS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


async def admin() -> asyncpg.Connection:
    """A plain connection for the test's own queries (not through the store under test)."""
    try:
        return await asyncpg.connect(PG_DSN, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_DSN} ({type(exc).__name__}: {exc}); "
            f"these tests need it: start it with `{_START}`",
            pytrace=False,
        )


def new_schema_name() -> str:
    return "t_" + uuid.uuid4().hex[:16]


async def pg_schema_fixture() -> AsyncIterator[str]:
    """Yield a DSN with a fresh ``schema=`` of its own; drop the schema afterwards."""
    name = new_schema_name()
    conn = await admin()
    try:
        yield f"{PG_DSN}?schema={name}"
    finally:
        # workers of the test may still hold connections: end them so that DROP cannot wait
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name LIKE '%:' || $1 AND pid <> pg_backend_pid()",
            name,
        )
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await conn.close()


async def terminate(role: str, schema: str) -> int:
    """pg_terminate_backend every connection of *role* (pool, listen, heartbeat) of *schema*;
    how many were killed."""
    conn = await admin()
    try:
        killed: int = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1",
            f"asyncworkers-{role}:{schema}",
        )
    finally:
        await conn.close()
    return killed
