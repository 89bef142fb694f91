"""The dashboard: one self-contained page (``_dashboard.html``: no CDN, no assets), the JSON
it polls, and the admin actions behind its Retry / Cancel buttons.

Writes are POSTs that must pass :func:`refuse_write`: admin actions on (``admin`` or a
``token``), the bearer token when one is set, a per-process secret in a custom header (a
cross-site form cannot send one, and a cross-site ``fetch`` that tries needs a preflight
this server never grants), a same-origin ``Origin`` when the browser sends one, and, on a
loopback address, a loopback ``Host`` (a DNS-rebinding page names its own host).
"""

from __future__ import annotations

import json
import time
from collections import deque
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from ._metrics import JobTimes

if TYPE_CHECKING:
    from aiohttp import web

    from ..store import JobRecord
    from ._server import Ops

__all__ = ["SAMPLE_EVERY", "History", "act", "new_secret", "page", "refuse_write", "status"]

#: Seconds between two points of the dashboard's chart.
SAMPLE_EVERY = 2.0
# Points kept: ten minutes.
_POINTS = 300
# Running jobs listed (the oldest first); the count covers them all.
_RUNNING_SHOWN = 50
_CSRF_HEADER = "X-Asyncworkers-Csrf"
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


class History:
    """Finished jobs and run time sums every SAMPLE_EVERY seconds: the chart's points."""

    def __init__(self) -> None:
        self.points: deque[tuple[float, int, float]] = deque(maxlen=_POINTS)

    def sample(self, times: JobTimes) -> None:
        self.points.append((time.time(), sum(times.run.counts), times.run.total))

    def series(self) -> list[dict[str, float]]:
        """Per interval: jobs per second and mean run time."""
        out = []
        points = list(self.points)
        for (t0, n0, s0), (t1, n1, s1) in pairwise(points):
            span = max(t1 - t0, 1e-9)
            done = n1 - n0
            out.append(
                {"t": t1, "rate": done / span, "mean_run": (s1 - s0) / done if done else 0.0}
            )
        return out


def new_secret() -> str:
    import secrets

    return secrets.token_urlsafe(24)


def page(csrf: str, *, actions: bool, token: bool) -> str:
    from importlib import resources

    text = resources.files(__package__).joinpath("_dashboard.html").read_text("utf-8")
    config = json.dumps({"csrf": csrf, "actions": actions, "token": token})
    # JSON inside <script>: "<" escaped, so that no value can close the element
    return text.replace("/*CONFIG*/null", config.replace("<", "\\u003c"))


def status(ops: Ops) -> dict[str, Any]:
    """What the page shows, as JSON-ready data."""
    view, reading = ops.view, ops.reading
    running = sorted(view.running(), key=lambda r: -r.age)
    stuck_ids = {r.id for r in ops.watchdog.current} if ops.watchdog is not None else set()
    health = ops._probe.health().as_json() if ops._probe is not None else {}
    manager = view.manager
    runtime = view.runtime
    counters: dict[str, int] = {}
    if manager is not None:
        m = manager.metrics()
        counters = {
            k: getattr(m, k)
            for k in (
                "claimed",
                "succeeded",
                "failed",
                "retried",
                "dead",
                "rejected",
                "released",
                "lease_losses",
            )
        }
    elif runtime is not None:
        rm = runtime.metrics()
        counters = {
            k: getattr(rm, k) for k in ("submitted", "completed", "failed", "cancelled", "retried")
        }
    reason = view.readiness()
    oldest = reading.oldest
    return {
        "kind": view.kind,
        "worker": manager.worker if manager is not None else None,
        "now": time.time(),
        "ready": reason is None,
        "reason": reason,
        "health": health,
        "counters": counters,
        "running_count": len(running),
        "running": [
            {"id": r.id, "task": r.task, "queue": r.queue, "age": r.age, "stuck": r.id in stuck_ids}
            for r in running[:_RUNNING_SHOWN]
        ],
        "stuck": len(stuck_ids),
        "stuck_after": ops.options.stuck_after,
        "history": ops.history.series(),
        "store": None if view.store is None else {
            "queues": reading.queues,
            "error": reading.error,
            "read_age": None if reading.read_at is None else time.monotonic() - reading.read_at,
            "oldest_waiting": None if oldest is None else {
                **_record(oldest), "waiting": max(0.0, time.time() - oldest.run_at)
            },
            "dead": [_record(r) for r in reading.dead],
        },
    }  # fmt: skip


def _record(r: JobRecord) -> dict[str, Any]:
    return {"id": r.id, "task": r.task, "queue": r.queue, "attempts": r.attempts,
            "max_attempts": r.max_attempts, "error": r.error}  # fmt: skip


def refuse_write(ops: Ops, request: web.Request) -> tuple[int, str] | None:
    """None when this POST may change jobs, else (HTTP status, why not)."""
    import hmac

    options = ops.options
    if not options.actions:
        return 403, "admin actions are off (start the worker with --http-admin or a token)"
    if options.token is not None:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {options.token}".encode()):
            return 401, "a valid 'Authorization: Bearer <token>' header is needed"
    if not hmac.compare_digest(request.headers.get(_CSRF_HEADER, "").encode(), ops.csrf.encode()):
        return 403, f"missing or wrong {_CSRF_HEADER} header (reload the dashboard)"
    host = request.host
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{host}":
        return 403, f"cross-origin request from {origin!r} refused"
    bound_host = ops.address[0]
    if bound_host in _LOOPBACK_NAMES and _host_name(host) not in _LOOPBACK_NAMES:
        return 403, f"Host {host!r} is not a loopback name (DNS rebinding?)"
    return None


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rpartition(":")[0] if ":" in host else host


async def act(ops: Ops, action: str, job_id: int) -> bool:
    """Retry (a dead or cancelled store job) or cancel (a running job of this worker, else
    a queued store job). True when it was done."""
    if action == "cancel":
        for running in ops.view.running():
            if running.id == job_id:
                return running.job.cancel("cancelled from the dashboard")
    store = ops.view.store
    if store is None:
        return False
    if action == "retry":
        return await store.retry(job_id)
    return await store.cancel(job_id)
