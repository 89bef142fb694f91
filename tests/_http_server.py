"""A small HTTP server for the compat tests: ``python _http_server.py`` prints its port.

Stdlib only (ThreadingHTTPServer), on 127.0.0.1, an ephemeral port. Paths:
``/order-handler/<id>`` answers 200 with the id, ``/api`` 200, ``/fail`` 500, anything
else 404. It serves until its stdin closes (the test's end) or it is killed.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/order-handler/"):
            self._answer(200, self.path.rsplit("/", 1)[-1])
        elif self.path == "/api":
            self._answer(200, "ok")
        elif self.path == "/fail":
            self._answer(500, "failed")
        else:
            self._answer(404, "not found")

    def _answer(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.shutdown()


if __name__ == "__main__":
    main()
