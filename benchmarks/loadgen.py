"""The HTTP load generator next to its peers, side by side in one run, 127.0.0.1 only.

The server is nginx (``apt-get install nginx-light``) with one worker when it is installed,
else an aiohttp server in its own process; it is pinned to one core and every client to the
other (``taskset``), so that client and server do not fight over a core. Each client runs
in its own process for ``--seconds`` and reports the requests it completed:

- ``hand loop``: the floor a user would write: uvloop, one ``aiohttp.ClientSession`` with
  ``TCPConnector(limit=c)``, c coroutines doing ``async with s.get(url) as r: await
  r.read()`` until the time is up;
- ``asyncworkers load``: ``asyncworkers.loadgen.run(LoadConfig(url, concurrency=c,
  duration=...))`` under ``aw.run`` (uvloop): ``dispatch()`` of c user tasks on a Runtime,
  each sending back to back, every request recorded into the HDR histograms and the
  timeline;
- ``dispatch per request``: the other shape, ``aw.dispatch()`` of one task per request
  (``workers=c``, ``record=False``, no ``on_done``, nothing recorded), to show what the
  dispatcher's per-task work costs on every request;
- ``worker-dispatcher``: worker-dispatcher 1.4.0, 20 threads, one ``requests.Session`` per
  thread (its usual shape);
- ``wrk``: ``wrk -t1 -c c`` when installed, the ceiling (C, one thread).

And the open model: right after each round's closed ``asyncworkers load`` run, the same at
50% of the rate that run got (a pair sees the same machine: on a shared machine the load
swings 2x within a minute); figure: achieved rate within 1% of the target, best round.

Figures (from the issue): asyncworkers load >= 0.95x the hand loop, >= 10x
worker-dispatcher, in requests/s. Peers run in a shuffled order each round, ``--rounds``
rounds, the best round of each kept. Beside requests/s, each client's CPU time per request
(process CPU over the measured window, the least of the rounds): the figure least moved by
other load on a shared machine, where requests/s swing 2x between rounds.

Run: ``python benchmarks/loadgen.py [--seconds 5] [--concurrency 32] [--rounds 2]
[--server nginx|aiohttp] [--json PATH]``. Needs the ``bench`` extra. Timings compare the
peers of one run on one machine, never absolute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

SERVER_CORE = 0
CLIENT_CORE = 1
MIN_VS_HAND = 0.95
MIN_VS_WORKER_DISPATCHER = 10.0
MAX_OPEN_ERROR = 0.01

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log stderr error;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir};
    proxy_temp_path {dir};
    fastcgi_temp_path {dir};
    uwsgi_temp_path {dir};
    scgi_temp_path {dir};
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ return 200 "ok"; }}
    }}
}}
"""


# -- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], limit: float = 30.0) -> None:
    """Until the server accepts a connection (or has died)."""
    deadline = time.monotonic() + limit
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("the server never listened") from None
            time.sleep(0.05)


def pinned(core: int, argv: list[str]) -> list[str]:
    """*argv* pinned to one core when taskset is there (and the core exists)."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > core:
        return ["taskset", "-c", str(core), *argv]
    return argv


@contextmanager
def server(kind: str) -> Iterator[tuple[str, str]]:
    """Start the server; yields (its URL, what it is)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="aw-bench-") as tmp:
        if kind == "nginx":
            conf = Path(tmp) / "nginx.conf"
            conf.write_text(NGINX_CONF.format(dir=tmp, port=port))
            nginx = shutil.which("nginx") or "/usr/sbin/nginx"
            argv = [nginx, "-c", str(conf), "-p", tmp]
            label = subprocess.run(
                [nginx, "-v"], capture_output=True, text=True, check=False
            ).stderr.strip()
        else:
            argv = [sys.executable, __file__, "--serve-aiohttp", str(port)]
            label = "aiohttp server (one process)"
        proc = subprocess.Popen(pinned(SERVER_CORE, argv), stdin=subprocess.DEVNULL)
        try:
            wait_listening(port, proc)
            yield f"http://127.0.0.1:{port}/", f"{label}, pinned to core {SERVER_CORE}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def serve_aiohttp(port: int) -> None:
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", hello)
    import uvloop

    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# -- clients, each in its own process -------------------------------------------------------------


def client_hand_loop(url: str, concurrency: int, seconds: float) -> dict[str, Any]:
    import aiohttp
    import uvloop

    async def main() -> dict[str, Any]:
        done = 0
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as s:
            started, cpu = time.perf_counter(), time.process_time()
            until = started + seconds

            async def worker() -> None:
                nonlocal done
                while time.perf_counter() < until:
                    async with s.get(url) as r:
                        await r.read()
                    done += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        return {"requests": done, "seconds": elapsed, "cpu": cpu}

    return uvloop.run(main())


def client_loadgen(
    url: str, concurrency: int, seconds: float, rate: float | None = None
) -> dict[str, Any]:
    import asyncworkers as aw
    from asyncworkers import loadgen

    config = loadgen.LoadConfig(url, concurrency=concurrency, duration=seconds, rate=rate)
    cpu = time.process_time()
    report = aw.run(loadgen.run, config)
    return {
        "requests": report.requests,
        "seconds": report.duration,
        "cpu": time.process_time() - cpu,
        "errors": report.errors,
        "achieved_rate": report.recorder.achieved_rate,
        "late_sends": report.recorder.late_sends,
        "p99_ms": report.latency_ms()["p99"],
    }


def client_dispatch_bare(url: str, concurrency: int, seconds: float) -> dict[str, Any]:
    import aiohttp

    import asyncworkers as aw

    async def main() -> dict[str, Any]:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as s:

            async def fetch(task_id: int, config: Any, task: Any, metadata: dict[str, Any]) -> int:
                async with s.get(url) as r:
                    await r.read()
                    return r.status

            cpu = time.process_time()
            report = await aw.dispatch(
                fetch, 2**62, workers=concurrency, duration=seconds, record=False
            )
            cpu = time.process_time() - cpu
        return {"requests": report.completed, "seconds": report.duration, "cpu": cpu}

    return aw.run(main)


def client_worker_dispatcher(url: str, concurrency: int, seconds: float) -> dict[str, Any]:
    import requests
    import worker_dispatcher

    local = threading.local()

    def fetch(id: int, config: Any, task: Any, metadata: dict[str, Any]) -> int:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        response = session.get(url)
        return int(response.status_code)

    started, cpu = time.perf_counter(), time.process_time()
    results = worker_dispatcher.start(
        {
            "task": {"list": int(5_000 * seconds) + 1_000, "function": fetch},
            "worker": {"number": 20},
            "runtime": seconds,
            "verbose": False,
        }
    )
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    done = sum(1 for r in results if r == 200)
    return {"requests": done, "seconds": elapsed, "cpu": cpu}


def client_wrk(url: str, concurrency: int, seconds: float) -> dict[str, Any]:
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", url],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"(\d+) requests in ([\d.]+)(\w+)", proc.stdout)
    if match is None:
        raise RuntimeError(f"cannot read wrk's output:\n{proc.stdout}")
    unit = {"s": 1.0, "ms": 0.001, "m": 60.0}[match.group(3)]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"requests": int(match.group(1)), "seconds": float(match.group(2)) * unit, "cpu": cpu}


CLIENTS: dict[str, Callable[..., dict[str, Any]]] = {
    "hand loop": client_hand_loop,
    "asyncworkers load": client_loadgen,
    "dispatch per request": client_dispatch_bare,
    "worker-dispatcher": client_worker_dispatcher,
    "wrk": client_wrk,
}


def run_client(
    name: str, url: str, concurrency: int, seconds: float, rate: float | None = None
) -> dict[str, Any]:
    """Run one client in a fresh process pinned to the client core; its result."""
    argv = [sys.executable, __file__, "--client", name, url, str(concurrency), str(seconds)]
    if rate is not None:
        argv.append(str(rate))
    proc = subprocess.run(
        pinned(CLIENT_CORE, argv),
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"client {name!r} failed:\n{proc.stdout}\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["rps"] = result["requests"] / result["seconds"]
    result["cpu_us"] = 1e6 * result["cpu"] / max(result["requests"], 1)
    return result


# -- the run ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--server", choices=("nginx", "aiohttp"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--client", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--serve-aiohttp", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_aiohttp:
        serve_aiohttp(args.serve_aiohttp)
        return 0
    if args.client:
        name, url, concurrency, seconds, *rate = args.client
        fn = CLIENTS[name]
        extra = [float(rate[0])] if rate else []
        print(json.dumps(fn(url, int(concurrency), float(seconds), *extra)))
        return 0
    return bench(args)


def bench(args: argparse.Namespace) -> int:
    console = Console()
    kind = args.server or ("nginx" if shutil.which("nginx") else "aiohttp")
    peers = [n for n in CLIENTS if n != "wrk" or shutil.which("wrk")]
    best: dict[str, dict[str, Any]] = {}
    cpu_us: dict[str, float] = {}  # the least CPU per request of any round
    open_result: dict[str, Any] | None = None  # the open-model run closest to its target
    with server(kind) as (url, label):
        console.print(
            f"server: {label}; clients pinned to core {CLIENT_CORE}; concurrency "
            f"{args.concurrency}, {args.seconds:g} s per run, best of {args.rounds} rounds",
            highlight=False,
        )
        for round_ in range(args.rounds):
            order = random.sample(peers, len(peers))
            for name in order:
                result = run_client(name, url, args.concurrency, args.seconds)
                console.print(
                    f"  round {round_ + 1}: {name:24} {result['rps']:>10,.0f} req/s "
                    f"{result['cpu_us']:>8,.1f} CPU us/request",
                    highlight=False,
                )
                if name not in best or result["rps"] > best[name]["rps"]:
                    best[name] = result
                cpu_us[name] = min(cpu_us.get(name, float("inf")), result["cpu_us"])
                if name == "asyncworkers load":
                    # The open model right after, at half of what this round's closed run
                    # got: the pair sees the same machine (its load swings 2x in a minute).
                    target = 0.5 * result["rps"]
                    opened = run_client(name, url, args.concurrency, args.seconds, rate=target)
                    opened["target"] = target
                    opened["error"] = abs(opened["achieved_rate"] - target) / target
                    console.print(
                        f"  round {round_ + 1}: {'  open model':24} "
                        f"{opened['achieved_rate']:>10,.0f} req/s of {target:,.0f}, off by "
                        f"{100 * opened['error']:.2f}%, late sends {opened['late_sends']}",
                        highlight=False,
                    )
                    if open_result is None or opened["error"] < open_result["error"]:
                        open_result = opened
        assert open_result is not None
    ours = best["asyncworkers load"]["rps"]
    table = Table(
        title=f"HTTP load on 127.0.0.1 against {kind}, closed model, c={args.concurrency}"
    )
    headings = ("client", "req/s", "asyncworkers load / this", "CPU us/request")
    for heading in headings:
        table.add_column(heading, justify="right" if heading != "client" else "left")
    for name in peers:
        rps = best[name]["rps"]
        table.add_row(name, f"{rps:,.0f}", f"{ours / rps:.2f}x", f"{cpu_us[name]:.1f}")
    console.print(table)
    console.print(
        "CPU us/request: the client process's CPU time (all its threads; wrk's own) over "
        "the requests it completed, the least of the rounds: the figure least moved by "
        "other load on the machine.",
        highlight=False,
    )
    cpu_vs_hand = cpu_us["hand loop"] / cpu_us["asyncworkers load"]
    console.print(
        f"CPU per request, hand loop / asyncworkers load: {cpu_vs_hand:.3f}x; "
        f"worker-dispatcher / asyncworkers load: "
        f"{cpu_us['worker-dispatcher'] / cpu_us['asyncworkers load']:.1f}x",
        highlight=False,
    )
    vs_hand = ours / best["hand loop"]["rps"]
    vs_wd = ours / best["worker-dispatcher"]["rps"]
    achieved, target, open_error = (
        open_result["achieved_rate"],
        open_result["target"],
        open_result["error"],
    )
    checks = [
        (f"closed model vs hand loop {vs_hand:.3f}x (>= {MIN_VS_HAND})", vs_hand >= MIN_VS_HAND),
        (
            f"closed model vs worker-dispatcher {vs_wd:.1f}x (>= {MIN_VS_WORKER_DISPATCHER:g})",
            vs_wd >= MIN_VS_WORKER_DISPATCHER,
        ),
        (
            f"open model at {target:,.0f} req/s (50% of its round's closed figure; the best "
            f"round): achieved {achieved:,.1f}, "
            f"off by {100 * open_error:.2f}% (<= 1%); late sends {open_result['late_sends']}, "
            f"p99 {open_result['p99_ms']:.2f} ms",
            open_error <= MAX_OPEN_ERROR,
        ),
    ]
    for text, ok in checks:
        console.print(f"{'PASS' if ok else 'FAIL'} {text}", highlight=False)
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"server": label, "closed": best, "cpu_us": cpu_us, "open": open_result},
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
