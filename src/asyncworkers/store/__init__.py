"""Durable jobs: stores (SQLite, PostgreSQL) and the Manager that feeds a Runtime from them.

See docs/store.md. The store protocol is :class:`Store`; any object with its methods works.
``PostgresStore`` is imported on first use, since it needs asyncpg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

if TYPE_CHECKING:  # at run time each name loads on first use
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
    from ._postgres import PostgresStore
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


# Where each name lives. Nothing is imported with the package: the command line's parsers
# read a few constants (``asyncworkers --help`` must not load sqlite3, asyncio or the
# Manager), and a name's module is imported when the name is first used.
_HOMES: dict[str, str] = {
    "Claimed": "._protocol",
    "DEFAULT_LEASE": "._protocol",
    "DEFAULT_RETRY": "._tasks",
    "DEFAULT_URL": "._url",
    "JobDead": "._errors",
    "JobRecord": "._protocol",
    "JobWouldDeadlock": "._errors",
    "MAX_PAYLOAD_BYTES": "._protocol",
    "Manager": "._manager",
    "ManagerMetrics": "._manager",
    "NewJob": "._protocol",
    "SQLiteStore": "._sqlite",
    "STATES": "._protocol",
    "State": "._protocol",
    "Store": "._protocol",
    "StoreError": "._errors",
    "StoreFull": "._errors",
    "StoreUnavailable": "._errors",
    "SyncHeartbeat": "._protocol",
    "TaskExited": "._errors",
    "TaskRegistry": "._tasks",
    "TaskSpec": "._tasks",
    "new_job": "._jobs",
    "open_store": "._url",
}

if not TYPE_CHECKING:  # hidden from type checkers, so that a misspelt name still fails there

    def _postgres_class() -> object:
        # PostgresStore pulls in asyncpg, which a SQLite-only user need not install.
        from ._url import postgres_class

        return postgres_class()

    __getattr__, __dir__ = lazy_names(__name__, _HOMES, loaders={"PostgresStore": _postgres_class})
