"""The operations endpoint: an aiohttp application on the worker's own loop, behind the
listener thread that answers ``/healthz`` (see ``_listener``).

Routes: ``GET /healthz`` (liveness), ``GET /readyz`` (readiness), ``GET /metrics``
(Prometheus), ``GET /`` (the dashboard), ``GET /api/status`` (its JSON), and, with admin
actions on, ``POST /api/jobs/{id}/retry`` and ``POST /api/jobs/{id}/cancel``.

aiohttp and prometheus_client are imported when an endpoint starts.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from . import _dashboard
from ._metrics import JobTimes, StoreReading, Stuck, make_registry, recorder_of
from ._options import Options
from ._probes import LoopProbe
from ._target import View, view_of
from ._watchdog import Watchdog

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["Ops"]

log = logging.getLogger("asyncworkers.ops")

Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]


class Ops:
    """The operations side of a Runtime or a Manager: the HTTP endpoint (when *address* is
    given), the loop probe, the metrics and the stuck-job watchdog.

    An async context manager, entered and left in one task on the target's loop; see
    :func:`asyncworkers.ops.serve`.
    """

    def __init__(self, target: object, address: tuple[str, int] | None, options: Options) -> None:
        if not isinstance(options, Options):
            raise TypeError(f"options must be an aw.ops.Options, got {options!r}")
        self.view: View = view_of(target)
        self.options = options
        self._address = address
        self.times: JobTimes | None = None  # made at the start (the runtime may not exist yet)
        self.stuck = Stuck()
        self.reading = StoreReading(self.view, options.refresh)
        self.history = _dashboard.History()
        self.watchdog = (
            Watchdog(self.view, options, self.stuck) if options.stuck_after is not None else None
        )
        self._probe: LoopProbe | None = None
        self._listener: Any = None
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tg: TaskGroup | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.csrf = _dashboard.new_secret()

    def __repr__(self) -> str:
        where = "no http" if self._address is None else self.url
        return f"<asyncworkers.ops.Ops {self.view.kind} {where}>"

    @property
    def address(self) -> tuple[str, int]:
        """The host and port served (the real port when 0 was asked for)."""
        if self._listener is None:
            raise RuntimeError(f"{self!r} does not serve HTTP (not started, or no address)")
        address: tuple[str, int] = self._listener.address
        return address

    @property
    def url(self) -> str:
        """``http://host:port`` of the endpoint."""
        if self._listener is None:
            return "(not serving)"
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def __aenter__(self) -> Ops:
        if self._tg is not None:
            raise RuntimeError(f"{self!r} can be started only once")
        runtime = self.view.runtime
        if runtime is None:
            raise RuntimeError("the Manager has no runtime yet: start ops after the Manager")
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "asyncworkers.ops needs the asyncio backend (uvloop or not)"
            ) from None
        self.times = JobTimes(recorder_of(runtime))
        self._probe = LoopProbe(self._loop, self.options.lag_threshold)
        self._probe.start()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            self._tg.start_soon(self._ingest_times)
            self._tg.start_soon(self._sample_history)
            self._tg.start_soon(self.reading.run)
            if self.watchdog is not None:
                self._tg.start_soon(self.watchdog.run)
            if self._address is not None:
                await self._serve(*self._address)
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        self._closing = True
        if self._listener is not None:
            self._listener.stop()  # at once: its thread wakes on a socket pair and ends
        with anyio.CancelScope(shield=True):
            if self._runner is not None:
                await self._runner.cleanup()
            for task in list(self._connections):
                task.cancel()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
            await self._tg.__aexit__(None, None, None)
        if self._probe is not None:
            self._probe.stop()

    # -- HTTP ----------------------------------------------------------------------------

    async def _serve(self, host: str, port: int) -> None:
        from aiohttp import web

        from ._listener import Listener

        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/", self._page)
        app.router.add_get("/api/status", self._status)
        app.router.add_post("/api/jobs/{id}/{action}", self._act)
        assert self.times is not None
        self._registry = make_registry(self.view, self.times, self.reading, self.stuck,
                                       self._lag)  # fmt: skip
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        assert self._probe is not None
        self._listener = Listener(host, port, self._probe, self._hand_off)
        self._listener.start()
        log.info("serving /healthz /readyz /metrics and the dashboard on %s", self.url)

    def _lag(self) -> float:
        return 0.0 if self._probe is None else self._probe.max_lag()

    def _hand_off(self, sock: socket.socket) -> None:
        """From the listener thread: give a connection to aiohttp on the loop."""
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._adopt, sock)
        except RuntimeError:  # the loop is closed
            sock.close()

    def _adopt(self, sock: socket.socket) -> None:
        if self._closing or self._runner is None or self._runner.server is None:
            sock.close()
            return
        assert self._loop is not None
        task = self._loop.create_task(self._loop.connect_accepted_socket(self._runner.server, sock))
        self._connections.add(task)
        task.add_done_callback(self._adopted)

    def _adopted(self, task: asyncio.Task[Any]) -> None:
        self._connections.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("could not take a connection: %r", task.exception())

    async def _healthz(self, request: web.Request) -> web.Response:
        from aiohttp import web

        assert self._probe is not None
        health = self._probe.health()
        return web.json_response(health.as_json(), status=200 if health.live else 503,
                                 headers=_NO_STORE)  # fmt: skip

    async def _readyz(self, request: web.Request) -> web.Response:
        from aiohttp import web

        reason = self.view.readiness()
        body = {"status": "ready"} if reason is None else {"status": "not ready", "reason": reason}
        return web.json_response(body, status=200 if reason is None else 503, headers=_NO_STORE)

    async def _metrics(self, request: web.Request) -> web.Response:
        from aiohttp import web
        from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

        self.reading.ask()
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _page(self, request: web.Request) -> web.Response:
        from aiohttp import web

        html = _dashboard.page(self.csrf, actions=self.options.actions,
                               token=self.options.token is not None)  # fmt: skip
        return web.Response(text=html, content_type="text/html", headers={
            **_NO_STORE,
            "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
            "style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff",
        })  # fmt: skip

    async def _status(self, request: web.Request) -> web.Response:
        from aiohttp import web

        self.reading.ask()
        return web.json_response(_dashboard.status(self), headers=_NO_STORE)

    async def _act(self, request: web.Request) -> web.Response:
        from aiohttp import web

        refused = _dashboard.refuse_write(self, request)
        if refused is not None:
            status, why = refused
            return web.json_response({"error": why}, status=status)
        action = request.match_info["action"]
        try:
            job_id = int(request.match_info["id"])
        except ValueError:
            return web.json_response({"error": "the job id must be an integer"}, status=400)
        if action not in ("retry", "cancel"):
            return web.json_response({"error": f"unknown action {action!r}"}, status=404)
        try:
            done = await _dashboard.act(self, action, job_id)
        except Exception as exc:
            log.warning("dashboard %s of job %s failed: %r", action, job_id, exc)
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=503)
        self.reading.ask(now=True)  # show the change at the next polls
        log.info("dashboard: %s of job %s %s", action, job_id, "done" if done else "refused")
        return web.json_response({"ok": done}, status=200 if done else 409)

    async def _ingest_times(self) -> None:
        assert self.times is not None
        while True:
            self.times.ingest()
            await anyio.sleep(_INGEST_EVERY)

    async def _sample_history(self) -> None:
        assert self.times is not None
        while True:
            self.times.ingest()
            self.history.sample(self.times)
            await anyio.sleep(_dashboard.SAMPLE_EVERY)  # read here: a benchmark may change it


_NO_STORE = {"Cache-Control": "no-store"}
# Seconds between two bucketings of the runtime's time samples (see JobTimes).
_INGEST_EVERY = 0.1
