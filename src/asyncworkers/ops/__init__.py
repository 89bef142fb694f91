"""Operations: health probes, Prometheus metrics, a live dashboard, a stuck-job watchdog and
tracing, for a store worker (``asyncworkers worker --http``, ``Manager(http=...)``) or a
plain Runtime (:func:`serve`). See docs/operations.md.

``serve()`` returns the endpoint (``asyncworkers.ops._server.Ops``): an async context
manager with ``url`` and ``address``.

Importing this module is cheap: aiohttp, prometheus_client and opentelemetry are imported
when an endpoint starts (or a traced job runs), never before; asyncio and anyio when
``serve`` or ``inject_trace`` is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names
from ._options import DEFAULT_PORT, Options, StuckAction, parse_address

if TYPE_CHECKING:
    from ._serve import serve
    from ._tracing import inject_trace

__all__ = (
    "DEFAULT_PORT",
    "Options",
    "StuckAction",
    "inject_trace",
    "parse_address",
    "serve",
)

# serve() and inject_trace() are imported on first use: their modules load asyncio and anyio,
# which the command line's parser (it reads Options for --http) must not.
_HOMES: dict[str, str] = {"inject_trace": "._tracing", "serve": "._serve"}

if not TYPE_CHECKING:  # hidden from type checkers, so that a misspelt name still fails there
    __getattr__, __dir__ = lazy_names(__name__, _HOMES)
