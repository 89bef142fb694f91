"""Durable jobs: stores (SQLite, PostgreSQL) and the Manager that feeds a Runtime from them.

See docs/store.md. The store protocol is :class:`Store`; any object with its methods works.
"""

from __future__ import annotations

from ._errors import JobDead, StoreError, StoreUnavailable
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

__all__ = (
    "DEFAULT_LEASE",
    "MAX_PAYLOAD_BYTES",
    "STATES",
    "Claimed",
    "JobDead",
    "JobRecord",
    "NewJob",
    "State",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "SyncHeartbeat",
)
