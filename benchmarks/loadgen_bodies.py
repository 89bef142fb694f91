"""``asyncworkers load`` against hostile and large bodies: peak memory and bytes/s.

The server is the tests' aiohttp server (tests/_loadgen_server.py) in its own process:
``/bytes/N`` (a body of N bytes), ``/endless`` (a chunked body that never ends, as fast as
the client reads it). Each client runs in a process of its own and reports its peak
resident set (``VmHWM`` of /proc/self/status), so the figures are memory, not timing:

- ``asyncworkers load``: the command line in-process (``tests/_load_hwm.py``), bodies
  streamed, counted and dropped, ``--max-body`` as given;
- ``hand loop, read()``: the shape ``load`` had before issue 17.4 (and most scripts have):
  ``async with session.get(url) as r: await r.read()``, c coroutines, the same timeout.

Run: ``python benchmarks/loadgen_bodies.py [--concurrency 8] [--seconds 3] [--json PATH]``.
MB/s depend on the machine and its load (the Python server is the bottleneck here); the
memory figures do not.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
SERVER = REPO / "tests" / "_loadgen_server.py"
HWM = REPO / "tests" / "_load_hwm.py"

HAND_LOOP = """
import asyncio, json, sys, time
import aiohttp

async def main(url, concurrency, requests, timeout):
    left = requests
    got = 0
    errors = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s:
        async def user():
            nonlocal left, got
            while left > 0:
                left -= 1
                try:
                    async with s.get(url) as r:
                        got += len(await r.read())
                except Exception as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        started = time.monotonic()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        seconds = time.monotonic() - started
    status = open("/proc/self/status").read().splitlines()
    hwm = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
    print(json.dumps({"vmhwm_kb": hwm, "bytes": got, "seconds": seconds, "errors": errors}))

url, c, n, t = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
asyncio.run(main(url, c, n, t))
"""


@contextmanager
def serving() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, str(SERVER)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # the dropped connections' tracebacks
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            raise SystemExit(f"the test server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[-1])}"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=60)


def run_load(url: str, concurrency: int, requests: int, timeout: float, cap: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        out, report = Path(folder) / "hwm.json", Path(folder) / "report.json"
        subprocess.run(
            [sys.executable, str(HWM), str(out), "load", url, "-c", str(concurrency),
             "-n", str(requests), "--timeout", f"{timeout}s", "--max-body", cap, "-q",
             "--json", str(report)],
            check=True, capture_output=True, cwd=REPO,
        )  # fmt: skip
        data = json.loads(report.read_text())
        peak = json.loads(out.read_text())
    kinds = {k: n for k, n in data["errors_by_kind"].items() if n}
    return {
        "client": f"asyncworkers load --max-body {cap}",
        "vmhwm_mb": peak["vmhwm_kb"] / 1024,
        "mb_per_s": data["body_bytes_per_s"] / 1e6,
        "outcomes": f"ok {data['ok']}" + "".join(f", {k} {n}" for k, n in kinds.items()),
    }


def run_hand_loop(url: str, concurrency: int, requests: int, timeout: float) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", HAND_LOOP, url, str(concurrency), str(requests), str(timeout)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    data = json.loads(done.stdout)
    errors = ", ".join(f"{k} {n}" for k, n in data["errors"].items())
    return {
        "client": "hand loop, await r.read()",
        "vmhwm_mb": data["vmhwm_kb"] / 1024,
        "mb_per_s": data["bytes"] / data["seconds"] / 1e6,  # 0 when every read() failed
        "outcomes": errors or f"ok {requests}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0, help="the timeout of /endless")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    c, t = args.concurrency, args.seconds
    rows: list[dict[str, Any]] = []
    with serving() as base:
        cases = [
            ("/bytes/1000 x 2000", f"{base}/bytes/1000", 2000, 10.0, "64MiB"),
            ("/bytes/10000000 x 40", f"{base}/bytes/10000000", 40, 60.0, "64MiB"),
            ("/endless, default cap", f"{base}/endless", 4 * c, 60.0, "64MiB"),
            (f"/endless, {t:g} s timeout", f"{base}/endless", c, t, "1TiB"),
        ]
        for name, url, n, timeout, cap in cases:
            rows.append({"case": name, **run_load(url, c, n, timeout, cap)})
            if name.startswith("/bytes/10000000") or "timeout" in name:
                rows.append({"case": name, **run_hand_loop(url, c, n, timeout)})
    table = Table(title=f"Response bodies, concurrency {c} (peak RSS of the client process)")
    for heading in ("case", "client", "peak RSS MB", "MB/s", "outcomes"):
        table.add_column(heading, justify="left" if heading in ("case", "client") else "right")
    for row in rows:
        table.add_row(row["case"], row["client"], f"{row['vmhwm_mb']:.0f}",
                      f"{row['mb_per_s']:.0f}", row["outcomes"])  # fmt: skip
    Console().print(table)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
