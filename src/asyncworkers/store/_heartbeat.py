"""The heartbeat thread: keeps the leases of held jobs alive while the event loop is busy.

A thread, not a task: a job that blocks the event loop (a bug, but a common one) must not
cost the worker its leases, or another worker would run the job a second time meanwhile.

A thread still needs the GIL. Pure Python code hands it over every few milliseconds, but a
C call that keeps it (a long ``sum(range(10**10))``, a regex backtracking over a huge string,
an extension that never releases it) stops this thread too; past a lease, the leases lapse
and another worker may run those jobs again. That cannot be prevented from here, so it is
not silent: the thread notices that it woke a lease or more late and logs an error naming
the cause and the remedies (``kind="process"`` for such work, or a longer lease).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from ._protocol import SyncHeartbeat

__all__ = ["ClockWatch", "LeaseKeeper"]

log = logging.getLogger("asyncworkers.store")

# How long stopping waits for a beat under way (one that waits out a locked database).
_JOIN_TIMEOUT = 10.0


class ClockWatch:
    """Notices the wall clock (``time.time``, what leases are written in) jumping forward
    against the monotonic one: an NTP step, a suspended VM resumed, an operator's ``date``.

    A lease written before such a jump looks expired after it, though its holder is alive
    and will renew it within ``lease / 3``; whoever looks for expired leases must wait one
    lease before believing them again.
    """

    __slots__ = ("_mono", "_wall")

    def __init__(self) -> None:
        self._wall = time.time()
        self._mono = time.monotonic()

    def step(self) -> tuple[float, float]:
        """Since the last call: how far the wall clock went beyond the monotonic one (a
        forward jump), and how long it was by the monotonic clock."""
        wall, mono = time.time(), time.monotonic()
        jump = (wall - self._wall) - (mono - self._mono)
        gap = mono - self._mono
        self._wall, self._mono = wall, mono
        return jump, gap


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
        self.rounds = 0  # wake-ups of the thread, each with a beat when claims are held

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
            last = time.monotonic()  # after the warm-up, which may wait for a connection
            while not self._stop.wait(self._lease / 3):
                now = time.monotonic()
                with self._lock:
                    held = list(self._claims.items())
                if now - last > self._lease:
                    self._stalled(now - last, len(held))
                last = now
                if held and not self._beat_once(held, loop):
                    return
                self.rounds += 1
        finally:
            self._beat.close()

    def _warm(self) -> None:
        """An empty beat: a store may open its connection now, not at the first renewal."""
        try:
            self._beat.beat([], self._lease)
        except Exception as exc:  # the first real beat tries again
            log.warning("heartbeat: cannot connect yet (%s: %s)", type(exc).__name__, exc)

    def _stalled(self, seconds: float, held: int) -> None:
        log.error(
            "the heartbeat thread of worker %s could not run for %.1f s, longer than the "
            "lease (%g s): a job held the GIL (a C call that never releases it) or the "
            "process was stopped. The leases of its %d held job(s) may have lapsed, and "
            "another worker may run them again. Run such work with kind='process', or give "
            "the worker a lease longer than the longest hold.",
            self._name, seconds, self._lease, held,
        )  # fmt: skip

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
