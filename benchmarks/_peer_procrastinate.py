"""procrastinate 3.10 app and worker for benchmarks/store.py.

``python _peer_procrastinate.py DSN`` runs its documented async worker at concurrency 10;
the benchmark imports ``make_app(DSN)`` to defer jobs. Tasks as in _store_tasks.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import procrastinate


def _stamp(i: int) -> None:
    with open(os.environ["AW_BENCH_STAMPS"], "a") as f:
        f.write(f"{i} {time.time()!r}\n")


def make_app(dsn: str) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    @app.task(name="stamp")
    async def stamp(i: int) -> None:
        _stamp(i)

    return app


async def main(dsn: str) -> None:
    app = make_app(dsn)
    async with app.open_async():
        await app.run_worker_async(concurrency=10, install_signal_handlers=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
