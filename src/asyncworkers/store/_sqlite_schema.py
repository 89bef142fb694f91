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
    # 2: queued rows split into due and scheduled (run_at in the future when written), so
    # that a claim never walks past jobs that wait for a later time. ``scheduled = 1`` rows
    # sit in an index by run_at; each claim first moves those now due to the ready index
    # (one index probe when none is), then walks the ready index in claim order.
    (
        "ALTER TABLE aw_jobs ADD COLUMN scheduled INTEGER NOT NULL DEFAULT 0",
        "UPDATE aw_jobs SET scheduled = 1 "
        "WHERE state = 'queued' AND run_at > (julianday('now') - 2440587.5) * 86400.0",
        "DROP INDEX IF EXISTS aw_jobs_waiting",
        # claim: the due waiting rows in claim order
        "CREATE INDEX IF NOT EXISTS aw_jobs_ready ON aw_jobs (priority DESC, id) "
        "WHERE state = 'queued' AND scheduled = 0",
        # the stager: the scheduled rows by due time
        "CREATE INDEX IF NOT EXISTS aw_jobs_scheduled ON aw_jobs (run_at) "
        "WHERE state = 'queued' AND scheduled = 1",
    ),
    # 3: periodic tasks
    (
        # periodic tasks: the latest instant each was enqueued for (advance_schedule)
        "CREATE TABLE IF NOT EXISTS aw_schedules (name TEXT PRIMARY KEY, last_at REAL NOT NULL)",
    ),
)
