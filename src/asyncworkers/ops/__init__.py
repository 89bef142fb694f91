"""Operations: health probes, Prometheus metrics, a live dashboard, a stuck-job watchdog and
tracing, for a store worker (``asyncworkers worker --http``, ``Manager(http=...)``) or a
plain Runtime (:func:`serve`). See docs/operations.md.

``serve()`` returns the endpoint (``asyncworkers.ops._server.Ops``): an async context
manager with ``url`` and ``address``.

Importing this module is cheap: aiohttp, prometheus_client and opentelemetry are imported
when an endpoint starts (or a traced job runs), never before.
"""

from __future__ import annotations

from ._options import DEFAULT_PORT, Options, StuckAction, parse_address
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
