"""The heartbeat thread: keeps the leases of held jobs alive while the event loop is busy.

A thread, not a task: a job that blocks the event loop (a bug, but a common one) must not
cost the worker its leases, or another worker would run the job a second time meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from ._protocol import SyncHeartbeat

__all__ = ["LeaseKeeper"]

log = logging.getLogger("asyncworkers.store")

# How long stopping waits for a beat under way (one that waits out a locked database).
_JOIN_TIMEOUT = 10.0


class LeaseKeeper:
    """Renews the leases of the held ``(id, token)`` claims every ``lease / 3`` seconds.

    ``hold``/``drop`` run on the event loop; the thread reads a copy under a lock. Claims the
    store reports lost go to ``on_lost`` on the loop, as ``(id, token)`` pairs, without the
    thread waiting for the loop (which may be the thing that is blocked).
    """

    def __init__(
        self,
        beat: SyncHeartbeat,
        lease: float,
        on_lost: Callable[[set[tuple[int, int]]], None],
        name: str,
    ) -> None:
        self._beat = beat
        self._lease = lease
        self._on_lost = on_lost
        self._name = name
        self._claims: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, job_id: int, token: int) -> None:
        with self._lock:
            self._claims[job_id] = token

    def drop(self, job_id: int) -> None:
        with self._lock:
            self._claims.pop(job_id, None)

    def start(self) -> None:
        """Start the thread; call it on the event loop that ``on_lost`` must run on."""
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._run,
            args=(loop,),
            name=f"asyncworkers-heartbeat-{self._name}",
            daemon=True,  # never keeps a dying process alive; its leases then expire
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (idempotent); it closes the heartbeat's connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=_JOIN_TIMEOUT)

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            self._warm()
            while not self._stop.wait(self._lease / 3):
                with self._lock:
                    held = list(self._claims.items())
                if held and not self._beat_once(held, loop):
                    return
        finally:
            self._beat.close()

    def _warm(self) -> None:
        """An empty beat: a store may open its connection now, not at the first renewal."""
        try:
            self._beat.beat([], self._lease)
        except Exception as exc:  # the first real beat tries again
            log.warning("heartbeat: cannot connect yet (%s: %s)", type(exc).__name__, exc)

    def _beat_once(self, held: list[tuple[int, int]], loop: asyncio.AbstractEventLoop) -> bool:
        """One beat; False when the loop is gone (nothing left to keep)."""
        try:
            lost = self._beat.beat(held, self._lease)
        except Exception:  # the next beat may get through: a lease is three beats long
            log.exception("heartbeat failed")
            return True
        if lost:
            pairs = {(job_id, token) for job_id, token in held if job_id in lost}
            try:
                loop.call_soon_threadsafe(self._on_lost, pairs)
            except RuntimeError:  # the loop is closed
                return False
        return True
