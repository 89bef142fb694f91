"""The SQL of :class:`PostgresStore`, one statement per operation, for one schema.

Every write about a claimed job is fenced: it matches ``token = $token AND state =
'running'`` and reports the ids it changed, so a stale attempt changes nothing. Run again
after a lost connection (``again``), it also matches the row in the state it would have
left it in, so that a write applied whose reply was lost is not reported as fenced out. Writes take
arrays (``unnest``) so that one statement, one round trip and one commit serve a whole batch.
Times cross the wire as unix seconds (float8); leases are computed on the server's clock, so
workers on machines whose clocks disagree still agree on when a lease ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._pg_migrations import quote_ident

# scheduled rows that come due staged per claim at most (more: at the next claims)
_STAGE_BATCH = 1000

# the columns of a JobRecord, times as unix seconds
_RECORD = """id, task, args, state, priority, queue, attempts, max_attempts, result, error, key,
    extract(epoch FROM enqueued_at)::float8 AS enqueued_at,
    extract(epoch FROM run_at)::float8 AS run_at,
    extract(epoch FROM started_at)::float8 AS started_at,
    extract(epoch FROM finished_at)::float8 AS finished_at,
    extract(epoch FROM lease_until)::float8 AS lease_until, worker"""


@dataclass(frozen=True, slots=True)
class Statements:
    enqueue: str
    enqueue_many: str
    ids_by_key: str
    claim_any: str
    claim_queues: str
    complete: str
    fail: str
    release: str
    heartbeat: str
    requeue_expired: str
    notify: str
    get: str
    counts: str
    queue_counts: str
    oldest_waiting: str
    dead: str
    retry: str
    cancel: str
    purge: str
    jobs: str
    schedule_mark: str
    schedule_insert: str
    schedule_update: str


def statements(schema: str) -> Statements:
    s = quote_ident(schema)
    t = f"{s}.jobs"
    return Statements(
        enqueue=f"""
            INSERT INTO {t} (task, args, priority, queue, max_attempts, key, run_at, scheduled)
            VALUES ($1, $2, $3, $4, $5, $6, coalesce(to_timestamp($7::float8), now()),
                    coalesce(to_timestamp($7::float8) > now(), false))
            ON CONFLICT (key) WHERE key IS NOT NULL DO NOTHING
            RETURNING id""",
        # Ids are drawn in input order (MATERIALIZED pins one nextval per row), so a batch is
        # FIFO in itself; rows whose key exists already are skipped and looked up after.
        enqueue_many=f"""
            WITH input AS MATERIALIZED (
                SELECT nextval(pg_get_serial_sequence('{t}', 'id')) AS id, j.*
                FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::int[],
                            $6::text[], $7::float8[]) WITH ORDINALITY
                     AS j(task, args, priority, queue, max_attempts, key, run_at, ord)
                ORDER BY j.ord
            ), inserted AS (
                INSERT INTO {t} (id, task, args, priority, queue, max_attempts, key, run_at,
                                 scheduled)
                SELECT id, task, args, priority, queue, max_attempts, key,
                       coalesce(to_timestamp(run_at), now()),
                       coalesce(to_timestamp(run_at) > now(), false)
                FROM input
                ON CONFLICT (key) WHERE key IS NOT NULL DO NOTHING
                RETURNING id
            )
            SELECT ins.id FROM input i LEFT JOIN inserted ins ON ins.id = i.id ORDER BY i.ord""",
        ids_by_key=f"SELECT key, id FROM {t} WHERE key = ANY($1::text[])",
        claim_any=_claim(t, queue_filter=""),
        claim_queues=_claim(t, queue_filter="AND queue = ANY($5::text[])"),
        complete=f"""
            UPDATE {t} AS j SET state = 'succeeded', result = w.result, error = NULL,
                finished_at = now(), lease_until = NULL
            FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS w(id, token, result)
            WHERE j.id = w.id AND j.token = w.token
              AND (j.state = 'running' OR ($4::bool AND j.state = 'succeeded'))
            RETURNING j.id""",
        # A retry wanted by the worker still ends dead when the row is out of attempts.
        fail=f"""
            UPDATE {t} SET
                state = CASE WHEN $4::float8 IS NULL OR attempts >= max_attempts
                             THEN 'dead' ELSE 'queued' END,
                error = $3,
                run_at = CASE WHEN $4::float8 IS NULL THEN run_at ELSE to_timestamp($4) END,
                scheduled = coalesce(to_timestamp($4::float8) > now(), false),
                finished_at = CASE WHEN $4::float8 IS NULL OR attempts >= max_attempts
                                   THEN now() END,
                lease_until = NULL
            WHERE id = $1 AND token = $2
              AND (state = 'running' OR ($5::bool AND state IN ('queued', 'dead')))
            RETURNING state""",
        release=f"""
            UPDATE {t} SET state = 'queued', lease_until = NULL, worker = NULL, scheduled = false,
                attempts = attempts - CASE WHEN state = 'running' THEN 1 ELSE 0 END
            WHERE id = $1 AND token = $2
              AND (state = 'running' OR ($3::bool AND state = 'queued'))
            RETURNING id""",
        heartbeat=f"""
            UPDATE {t} AS j SET lease_until = now() + make_interval(secs => $3)
            FROM unnest($1::bigint[], $2::bigint[]) AS h(id, token)
            WHERE j.id = h.id AND j.token = h.token AND j.state = 'running'
            RETURNING j.id""",
        requeue_expired=f"""
            UPDATE {t} SET
                state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
                error = 'lease expired: worker ' || coalesce(worker, '?')
                        || ' lost attempt ' || attempts || ' of ' || max_attempts,
                finished_at = CASE WHEN attempts >= max_attempts THEN now() END,
                lease_until = NULL, scheduled = false
            WHERE state = 'running' AND lease_until < now()
            RETURNING state""",
        notify="SELECT pg_notify($1, '')",
        get=f"SELECT {_RECORD} FROM {t} WHERE id = $1",
        counts=f"""
            SELECT state, count(*)::int AS n FROM {t}
            WHERE $1::text IS NULL OR queue = $1 GROUP BY state""",
        queue_counts=f"SELECT queue, state, count(*)::int AS n FROM {t} GROUP BY queue, state",
        oldest_waiting=f"""
            SELECT {_RECORD} FROM {t}
            WHERE state = 'queued' AND run_at <= now() ORDER BY enqueued_at, id LIMIT 1""",
        dead=f"""
            SELECT {_RECORD} FROM {t} WHERE state = 'dead'
            ORDER BY finished_at DESC, id DESC LIMIT $1""",
        retry=f"""
            UPDATE {t} SET state = 'queued', attempts = 0, run_at = now(), finished_at = NULL,
                lease_until = NULL, scheduled = false
            WHERE id = $1 AND state IN ('dead', 'cancelled')
            RETURNING id""",
        cancel=f"""
            UPDATE {t} SET state = 'cancelled', finished_at = now(), error = 'cancelled'
            WHERE id = $1 AND state = 'queued'
            RETURNING id""",
        # one batch ($3 rows); the first condition is the ended-rows index's own
        purge=f"""
            WITH gone AS (
                DELETE FROM {t} WHERE id IN (
                    SELECT id FROM {t}
                    WHERE state IN ('succeeded', 'dead', 'cancelled')
                      AND state = ANY($2::text[]) AND finished_at < to_timestamp($1)
                    LIMIT $3)
                RETURNING 1)
            SELECT count(*)::int FROM gone""",
        jobs=f"""
            SELECT {_RECORD} FROM {t}
            WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR queue = $2)
              AND ($3::text IS NULL OR task = $3)
            ORDER BY id DESC LIMIT $4""",
        schedule_mark=f"SELECT last_at FROM {s}.schedules WHERE name = $1",
        schedule_insert=f"""
            INSERT INTO {s}.schedules (name, last_at) VALUES ($1, $2)
            ON CONFLICT (name) DO NOTHING RETURNING name""",
        schedule_update=f"""
            UPDATE {s}.schedules SET last_at = $2 WHERE name = $1 AND last_at = $3
            RETURNING name""",
    )


def _claim(t: str, *, queue_filter: str) -> str:
    """Claim a batch: walk the ready index in claim order, skip rows other workers hold.

    jobs_ready holds no scheduled row, so its walk meets due rows only, however many wait
    for a later time. The scheduled rows that have come due (``due``: one probe of
    jobs_scheduled when none has) compete in the same claim order; those not claimed are
    staged (``scheduled = false``), which moves them into jobs_ready. Each row is written
    once: by the claim if picked, else by the staging. Past _STAGE_BATCH rows come due at
    once, the rest join at the next claims.

    A row whose payload is over $4 bytes (written behind the store's back, far over what
    enqueue accepts) is dead-lettered by the same statement and handed out with an empty
    payload, so that no worker ever loads it; the Manager rejects the smaller oversized ones.
    """
    return f"""
        WITH due AS (
            SELECT id, priority FROM {t}
            WHERE state = 'queued' AND scheduled AND run_at <= now() {queue_filter}
            ORDER BY run_at
            LIMIT {_STAGE_BATCH}
            FOR UPDATE SKIP LOCKED
        ), ready AS (
            SELECT id, priority FROM {t}
            WHERE state = 'queued' AND NOT scheduled AND run_at <= now() {queue_filter}
            ORDER BY priority DESC, id
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        ), picked AS (
            SELECT id FROM (SELECT * FROM due UNION ALL SELECT * FROM ready) AS candidates
            ORDER BY priority DESC, id
            LIMIT $1
        ), staged AS (
            -- ids in an array: looked up one by one in the primary key (a join here may
            -- walk the key index across the whole span of their ids)
            UPDATE {t} SET scheduled = false
            WHERE id = ANY (ARRAY (
                SELECT id FROM due WHERE id NOT IN (SELECT id FROM picked)
            ))
        )
        UPDATE {t} AS j SET
            state = CASE WHEN octet_length(j.args) > $4 THEN 'dead' ELSE 'running' END,
            -- worded as the Manager words the rows it rejects
            error = CASE WHEN octet_length(j.args) > $4
                         THEN 'rejected, never run: arguments are ' || octet_length(j.args)
                              || ' bytes, over the ' || $4 || ' limit'
                    END,
            finished_at = CASE WHEN octet_length(j.args) > $4 THEN now() END,
            attempts = j.attempts + 1, claims = j.claims + 1,
            nonce = floor(random() * 2147483648)::int,
            lease_until = CASE WHEN octet_length(j.args) > $4 THEN NULL
                               ELSE now() + make_interval(secs => $2) END,
            worker = $3, started_at = now(), scheduled = false
        FROM picked
        WHERE j.id = picked.id
        RETURNING j.id, j.task, j.state,
            CASE WHEN j.state = 'dead' THEN '' ELSE j.args END AS args,
            j.queue, j.priority, j.attempts, j.max_attempts, j.token,
            extract(epoch FROM j.lease_until)::float8 AS lease_until"""
