"""Reaching PostgreSQL: where the DSN points, which errors mean "connection lost", retries.

A connection killed under us (``pg_terminate_backend``, a server restart, a network cut)
surfaces as one of several asyncpg or OS errors; :func:`is_connection_lost` names them all,
and :func:`with_retries` runs an operation again on a fresh pool connection, a few times over
a few seconds, before it gives up with :class:`StoreUnavailable` naming the host and port.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import asyncpg

from ._errors import StoreUnavailable

T = TypeVar("T")

DEFAULT_SCHEMA = "asyncworkers"
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,49}")

# Server-side errors that mean this session is gone or cannot start now. Not the whole
# OperatorInterventionError class: QueryCanceledError (a statement timeout) is in it.
_LOST: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable; ConnectionError is a subclass
    TimeoutError,  # connect timeout
    asyncpg.PostgresConnectionError,  # class 08, ConnectionDoesNotExistError among them
    asyncpg.AdminShutdownError,  # 57P01: pg_terminate_backend, fast shutdown
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,  # 57P03: starting up or shutting down
    asyncpg.TooManyConnectionsError,
    # a connection that the server ended while it sat idle in the pool: asyncpg finds the
    # server's goodbye where it expected a reply ("another operation is in progress")
    asyncpg.InternalClientError,
)


@dataclass(frozen=True, slots=True)
class Target:
    dsn: str  # what asyncpg gets: the DSN without our own parameters
    schema: str
    where: str  # "host:port" for messages
    durable_writes: bool | None = None  # from ``durable_writes=`` in the DSN, if given

    def settings(self, role: str) -> dict[str, str]:
        """Server settings of a connection: its name in pg_stat_activity says what it is."""
        return {"application_name": f"asyncworkers-{role}:{self.schema}"[:63]}


def parse_target(dsn: str, schema: str | None) -> Target:
    """Split our own parameters (``schema=``, ``durable_writes=``) off the DSN's query
    (asyncpg would send them to the server as settings) and find the host and port that
    error messages name."""
    if not isinstance(dsn, str) or not dsn.startswith(("postgresql://", "postgres://")):
        raise ValueError(f"a PostgreSQL DSN starts with postgresql:// ; got {dsn!r}")
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    from_dsn = [v for k, v in query if k == "schema"]
    durable = [v for k, v in query if k == "durable_writes"]
    rest = [(k, v) for k, v in query if k not in ("schema", "durable_writes")]
    if schema is None:
        schema = from_dsn[-1] if from_dsn else DEFAULT_SCHEMA
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError(
            f"schema must be a plain SQL name (letters, digits, _; at most 50), got {schema!r}"
        )
    host = parts.hostname or dict(rest).get("host") or os.environ.get("PGHOST") or "localhost"
    try:
        port = parts.port or int(dict(rest).get("port") or os.environ.get("PGPORT") or 5432)
    except ValueError:
        raise ValueError(f"the port of {dsn!r} is not a number") from None
    clean = urlunsplit(parts._replace(query=urlencode(rest)))
    return Target(
        dsn=clean,
        schema=schema,
        where=f"{host}:{port}",
        durable_writes=_flag("durable_writes", durable[-1]) if durable else None,
    )


def _flag(name: str, text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} in a PostgreSQL URL must be true or false, got {text!r}")


def is_connection_lost(exc: BaseException) -> bool:
    if isinstance(exc, _LOST):
        return True
    # asyncpg raises a bare InterfaceError when a call reaches a connection already closed
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


def unavailable(target: Target, exc: BaseException) -> StoreUnavailable:
    """The error naming where; transient when the server may come (back): refused, reset,
    starting up, too many connections; not for a wrong database name or password."""
    return StoreUnavailable(
        f"cannot reach PostgreSQL at {target.where} (schema {target.schema!r}): "
        f"{type(exc).__name__}: {exc}",
        transient=is_connection_lost(exc),
    )


async def with_retries(
    target: Target,
    op: Callable[[bool], Awaitable[T]],
    *,
    attempts: int = 5,
    first_pause: float = 0.05,
    again: bool = False,
) -> T:
    """Run ``op(again)``; when the connection is lost, run it again (pausing 50 ms, doubling).

    ``again`` is True on the second and later runs: the write may have been applied already
    with only its reply lost, and a fenced write then accepts the row in its resulting state
    (see _pg_sql). *again* makes the first run one of those too: the caller knows that an
    earlier call of the same write may have been applied (it ended in StoreUnavailable).
    Claims and plain enqueues are at-least-once: a claim whose reply was lost comes back
    after its lease; a plain enqueue may be made twice (a ``key`` prevents that).
    """
    pause = first_pause
    for run in range(attempts):
        try:
            return await op(again or run > 0)
        except Exception as exc:
            if not is_connection_lost(exc):
                raise
            if run == attempts - 1:
                raise unavailable(target, exc) from exc
        await anyio.sleep(pause)
        pause *= 2
    raise AssertionError("unreachable")  # pragma: no cover
