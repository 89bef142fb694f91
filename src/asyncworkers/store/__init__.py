"""Durable jobs: stores (SQLite, PostgreSQL) and the Manager that feeds a Runtime from them.

See docs/store.md. The store protocol is :class:`Store`; any object with its methods works.
``PostgresStore`` is imported on first use, since it needs asyncpg.
"""

from __future__ import annotations

from typing import Any

from ._errors import (
    JobDead,
    JobWouldDeadlock,
    StoreError,
    StoreFull,
    StoreUnavailable,
    TaskExited,
)
from ._jobs import new_job
from ._manager import Manager, ManagerMetrics
from ._protocol import (
    DEFAULT_LEASE,
    MAX_PAYLOAD_BYTES,
    STATES,
    Claimed,
    JobRecord,
    NewJob,
    State,
    Store,
    SyncHeartbeat,
)
from ._sqlite import SQLiteStore
from ._tasks import DEFAULT_RETRY, TaskRegistry, TaskSpec
from ._url import DEFAULT_URL, open_store

__all__ = (
    "DEFAULT_LEASE",
    "DEFAULT_RETRY",
    "DEFAULT_URL",
    "MAX_PAYLOAD_BYTES",
    "STATES",
    "Claimed",
    "JobDead",
    "JobRecord",
    "JobWouldDeadlock",
    "Manager",
    "ManagerMetrics",
    "NewJob",
    "PostgresStore",
    "SQLiteStore",
    "State",
    "Store",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "SyncHeartbeat",
    "TaskExited",
    "TaskRegistry",
    "TaskSpec",
    "new_job",
    "open_store",
)


def __getattr__(name: str) -> Any:
    # The one exception to "re-exports only": PostgresStore pulls in asyncpg, which a
    # SQLite-only user need not install, so it is imported when first named.
    if name == "PostgresStore":
        from ._url import postgres_class

        return postgres_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
