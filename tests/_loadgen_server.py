"""The HTTP server the load generator tests aim at: an aiohttp app on 127.0.0.1 (or the
address given: a host of tests/_hosts.py).

Run as ``python tests/_loadgen_server.py [ADDRESS]``; it binds an ephemeral port and prints
``listening on PORT`` once it accepts connections, then serves until its stdin closes or it
is terminated (the fixture in tests/test_loadgen_*.py reads that line: no sleeping).

Endpoints:
    /fast                   200 at once
    /slow?ms=N              200 after N milliseconds
    /status/{code}          that status (4xx, 5xx, ...)
    /stall-once/{key}?s=S   the first request for each key waits S seconds (default 1),
                            every later one answers at once
    /stall                  never answers (until the client gives up)
    /count/{key}            how many requests /fast?key=... and /stall-once/{key} have seen
    /bytes/{n}              a body of n bytes (with its Content-Length)
    /endless                a chunked body that never ends, 64 KiB chunks as fast as the
                            client reads them
    /trickle                a chunked body that never ends, one byte every 10 ms
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter

from aiohttp import web

_seen: Counter[str] = Counter()
_stalled: set[str] = set()


async def fast(request: web.Request) -> web.Response:
    key = request.query.get("key")
    if key is not None:
        _seen[key] += 1
    return web.Response(text="ok")


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(int(request.query.get("ms", "50")) / 1000)
    return web.Response(text="slow ok")


async def status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), text="as asked")


async def stall_once(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    _seen[key] += 1
    if key not in _stalled:
        _stalled.add(key)
        await asyncio.sleep(float(request.query.get("s", "1")))
    return web.Response(text="ok")


async def stall(request: web.Request) -> web.Response:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def sized(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * int(request.match_info["n"]))


async def endless(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    chunk = b"x" * 65536
    while True:  # write() waits while the client does not read: no buffer grows here
        await response.write(chunk)


async def trickle(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    while True:
        await response.write(b"x")
        await asyncio.sleep(0.01)


async def count(request: web.Request) -> web.Response:
    return web.Response(text=str(_seen[request.match_info["key"]]))


def make_app() -> web.Application:
    app = web.Application()
    app.add_routes(
        [
            web.route("*", "/fast", fast),
            web.get("/slow", slow),
            web.route("*", "/status/{code}", status),
            web.get("/stall-once/{key}", stall_once),
            web.get("/stall", stall),
            web.get("/count/{key}", count),
            web.get("/bytes/{n}", sized),
            web.get("/endless", endless),
            web.get("/trickle", trickle),
        ]
    )
    return app


async def serve() -> None:
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    site = web.TCPSite(runner, address, 0, backlog=1024)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on {port}", flush=True)
    # Serve until the parent closes our stdin (or kills us): no orphan servers.
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    # No runner.cleanup(): it waits for every handler, and /stall's never end. Leaving
    # serve() lets asyncio.run cancel them all; the process then exits.


if __name__ == "__main__":
    asyncio.run(serve())
