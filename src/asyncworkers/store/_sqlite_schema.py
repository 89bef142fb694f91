"""The SQLite schema, as versioned migrations keyed by ``PRAGMA user_version``."""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

# Each entry upgrades the schema by one version (entry i takes user_version i to i + 1), as
# a tuple of statements.
# Never edit a released entry: append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
    CREATE TABLE IF NOT EXISTS aw_jobs (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        task         TEXT    NOT NULL,
        args         TEXT    NOT NULL,
        state        TEXT    NOT NULL DEFAULT 'queued',
        priority     INTEGER NOT NULL DEFAULT 0,
        queue        TEXT    NOT NULL DEFAULT 'default',
        attempts     INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL DEFAULT 3,
        claims       INTEGER NOT NULL DEFAULT 0,  -- the fencing token
        result       TEXT,
        error        TEXT,
        key          TEXT UNIQUE,
        enqueued_at  REAL    NOT NULL,
        run_at       REAL    NOT NULL,
        started_at   REAL,
        finished_at  REAL,
        lease_until  REAL,
        worker       TEXT
    )
    """,
        # claim: the waiting rows in claim order
        "CREATE INDEX IF NOT EXISTS aw_jobs_waiting ON aw_jobs (priority DESC, id) "
        "WHERE state = 'queued'",
        # requeue_expired: the leases of running rows
        "CREATE INDEX IF NOT EXISTS aw_jobs_leases ON aw_jobs (lease_until) "
        "WHERE state = 'running'",
        # dead() and purge(): the ended rows by age
        "CREATE INDEX IF NOT EXISTS aw_jobs_ended ON aw_jobs (finished_at) "
        "WHERE state IN ('succeeded', 'dead', 'cancelled')",
    ),
    (
        # periodic tasks: the latest instant each was enqueued for (advance_schedule)
        "CREATE TABLE IF NOT EXISTS aw_schedules ( name TEXT PRIMARY KEY, last_at REAL NOT NULL)",
    ),
)
