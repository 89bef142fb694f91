"""The listening socket, owned by a thread, so that ``/healthz`` answers while the loop is
blocked.

The thread accepts each connection and peeks (``MSG_PEEK``: nothing is consumed) at its
first bytes. ``GET /healthz`` is answered right there from the loop probe; every other
connection is handed, untouched, to aiohttp on the event loop
(``loop.connect_accepted_socket``). A client that sends nothing within a moment is handed
over too: aiohttp has its own timeouts for slow clients.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import threading
import time
from collections.abc import Callable

from ._probes import LoopProbe

__all__ = ["Listener"]

_HEALTHZ = b"GET /healthz"
# Seconds a connection may take to show its request line before aiohttp gets it anyway.
_PEEK_DEADLINE = 2.0
# Longest request head the thread reads for /healthz; a longer one is refused.
_MAX_HEAD = 16384


class Listener:
    """Accepts on *host*:*port* in a thread; see the module docstring."""

    def __init__(
        self,
        host: str,
        port: int,
        probe: LoopProbe,
        hand_off: Callable[[socket.socket], None],
    ) -> None:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        self._sock = socket.socket(family, kind, proto)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind(address)
            self._sock.listen(128)
        except OSError:
            self._sock.close()
            raise
        self._sock.setblocking(False)
        self._address: tuple[str, int] = self._sock.getsockname()[:2]
        self._probe = probe
        self._hand_off = hand_off
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="asyncworkers-http-listener")
        self._thread.daemon = True

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (the port chosen by the system when 0 was asked)."""
        return self._address

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting; close the socket once the thread has let go of it."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread.is_alive():
            self._thread.join()
        for sock in (self._sock, self._wake_r, self._wake_w):
            sock.close()

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ, None)
            selector.register(self._wake_r, selectors.EVENT_READ, None)
            pending: dict[socket.socket, _Pending] = {}
            try:
                while not self._stopping:
                    timeout = _next_timeout(pending)
                    for key, _ in selector.select(timeout):
                        sock = key.fileobj
                        if sock is self._sock:
                            self._accept(selector, pending)
                        elif sock is not self._wake_r:
                            assert isinstance(sock, socket.socket)
                            self._readable(selector, pending, sock)
                    self._overdue(selector, pending)
            finally:
                for conn in pending:
                    conn.close()

    def _accept(
        self, selector: selectors.BaseSelector, pending: dict[socket.socket, _Pending]
    ) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of file descriptors, a reset before accept: skip it
                return
            conn.setblocking(False)
            pending[conn] = _Pending(time.monotonic() + _PEEK_DEADLINE)
            selector.register(conn, selectors.EVENT_READ, None)

    def _readable(
        self,
        selector: selectors.BaseSelector,
        pending: dict[socket.socket, _Pending],
        conn: socket.socket,
    ) -> None:
        state = pending[conn]
        try:
            if state.healthz:
                head = conn.recv(4096)
            else:
                head = conn.recv(len(_HEALTHZ) + 1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            head = b""
        if not head:  # closed by the client
            self._drop(selector, pending, conn)
            return
        if state.healthz:
            state.head += head
            if b"\r\n\r\n" in state.head or len(state.head) > _MAX_HEAD:
                self._drop(selector, pending, conn, answer=True)
            return
        if len(head) <= len(_HEALTHZ) and _HEALTHZ.startswith(head):
            return  # not enough to tell yet
        if head.startswith(_HEALTHZ) and head[len(_HEALTHZ) : len(_HEALTHZ) + 1] in (b" ", b"?"):
            state.healthz = True  # from now on, read (consume) its request head
            return
        selector.unregister(conn)
        del pending[conn]
        self._hand_off(conn)

    def _overdue(
        self, selector: selectors.BaseSelector, pending: dict[socket.socket, _Pending]
    ) -> None:
        now = time.monotonic()
        for conn, state in list(pending.items()):
            if state.deadline <= now:
                if state.healthz:
                    self._drop(selector, pending, conn)
                else:  # silent so far: aiohttp's timeouts decide
                    selector.unregister(conn)
                    del pending[conn]
                    self._hand_off(conn)

    def _drop(
        self,
        selector: selectors.BaseSelector,
        pending: dict[socket.socket, _Pending],
        conn: socket.socket,
        *,
        answer: bool = False,
    ) -> None:
        selector.unregister(conn)
        del pending[conn]
        if answer:
            with contextlib.suppress(OSError):
                conn.settimeout(1.0)  # a small reply: a client that does not read loses it
                conn.sendall(self._healthz_response())
                conn.shutdown(socket.SHUT_WR)
        conn.close()

    def _healthz_response(self) -> bytes:
        health = self._probe.health()
        body = json.dumps(health.as_json()).encode()
        status = b"200 OK" if health.live else b"503 Service Unavailable"
        return (
            b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
            b"Cache-Control: no-store\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )


class _Pending:
    """A connection the thread still looks at."""

    __slots__ = ("deadline", "head", "healthz")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.healthz = False
        self.head = b""


def _next_timeout(pending: dict[socket.socket, _Pending]) -> float | None:
    if not pending:
        return None
    return max(0.0, min(state.deadline for state in pending.values()) - time.monotonic())
