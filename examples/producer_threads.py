"""Producer threads: several manager threads feed one SyncRuntime, then it drains and stops.

The classic worker-pool shape, in a sync program: each manager thread builds
``aw.WorkUnit``s (positional and keyword arguments, a priority, a name and a callback) and
enqueues them; the runtime's workers run them, plain functions in threads and coroutine
functions on its event loop; the callbacks tally the results. Leaving the ``with`` block
drains every queued and running job before the loop thread stops. ``max_pending`` keeps the
managers from running ahead of the workers: ``enqueue`` blocks while the queue is full.

At the end it prints a summary and checks that nothing was lost: every unit enqueued was
run once, every callback fired once, and the totals match the ones the managers expected.

Run: ``python examples/producer_threads.py [--managers N] [--units N] [--workers N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections import Counter
from concurrent.futures import Future
from typing import Any

import asyncworkers as aw


def price_order(order_id: int, *, quantity: int, unit_cents: int) -> int:
    """A blocking step (runs in a worker thread): the order's total in cents."""
    aw.check_cancelled()  # the cooperative stop, should the runtime be shut down early
    return quantity * unit_cents


async def ship_order(order_id: int, *, carrier: str) -> str:
    """An I/O step (runs on the event loop): book a shipment, return its tracking code."""
    await asyncio.sleep(0)  # stands in for a network call
    return f"{carrier}-{order_id:06d}"


class Tally:
    """What the callbacks saw. Callbacks run on the runtime's loop thread; the lock makes
    the tally safe to read from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cents = 0
        self.shipments: set[str] = set()
        self.calls: Counter[str] = Counter()

    def priced(self, cents: int) -> None:
        with self._lock:
            self.cents += cents
            self.calls["priced"] += 1

    def shipped(self, code: str) -> None:
        with self._lock:
            self.shipments.add(code)
            self.calls["shipped"] += 1


def manager(
    rt: aw.SyncRuntime,
    index: int,
    units: int,
    tally: Tally,
    expected: list[int],
    futures: list[Future[Any]],
) -> None:
    """One producer thread: enqueue *units* orders, half priced and half shipped."""
    cents = 0
    mine: list[Future[Any]] = []
    for n in range(units):
        order_id = index * units + n
        if n % 2 == 0:
            quantity, unit_cents = 1 + n % 7, 100 + order_id % 900
            cents += quantity * unit_cents
            priced: aw.WorkUnit[int] = aw.WorkUnit(
                price_order,
                args=(order_id,),
                kwargs={"quantity": quantity, "unit_cents": unit_cents},
                callback=tally.priced,
                name=f"price-{order_id}",
                priority=aw.Priority.HIGH,
            )
            mine.append(rt.enqueue(priced))
        else:
            shipped: aw.WorkUnit[str] = aw.WorkUnit(
                ship_order,
                args=(order_id,),
                kwargs={"carrier": f"carrier{index}"},
                callback=tally.shipped,
                name=f"ship-{order_id}",
            )
            mine.append(rt.enqueue(shipped))
    expected[index] = cents
    futures.extend(mine)  # list.extend is atomic: one call per manager


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--managers", type=int, default=4, help="producer threads")
    parser.add_argument("--units", type=int, default=500, help="work units per manager")
    parser.add_argument("--workers", type=int, default=16, help="jobs run at once")
    args = parser.parse_args()

    tally = Tally()
    expected = [0] * args.managers
    futures: list[Future[Any]] = []
    started = time.perf_counter()
    with aw.SyncRuntime(args.workers, max_pending=4 * args.workers) as rt:
        managers = [
            threading.Thread(
                target=manager,
                args=(rt, index, args.units, tally, expected, futures),
                name=f"manager-{index}",
            )
            for index in range(args.managers)
        ]
        for thread in managers:
            thread.start()
        for thread in managers:
            thread.join()
        # Leaving the block drains: every unit still queued or running finishes first.
    elapsed = time.perf_counter() - started

    total = args.managers * args.units
    m = rt.metrics()
    priced = args.managers * ((args.units + 1) // 2)  # even-numbered units are priced
    shipped = total - priced
    # Nothing lost: every unit ran once, every callback fired once, the totals agree.
    assert len(futures) == total
    assert all(f.done() and f.exception() is None for f in futures)
    assert (m.submitted, m.completed, m.failed, m.cancelled) == (total, total, 0, 0)
    assert tally.calls == Counter({"priced": priced, "shipped": shipped})
    assert tally.cents == sum(expected)
    assert len(tally.shipments) == shipped
    assert not [t for t in threading.enumerate() if t.name.startswith("asyncworkers-sync-")]

    print(
        f"{args.managers} managers x {args.units} units = {total} jobs on {rt.loop}, "
        f"{args.workers} workers, in {elapsed:.2f} s"
    )
    print(f"priced {priced} orders, {tally.cents / 100:,.2f} in all; shipped {shipped} orders")
    print(
        f"completed {m.completed}, failed {m.failed}, cancelled {m.cancelled}; "
        f"wait p50 {m.wait_time.p50 * 1e3:.2f} ms, run p50 {m.run_time.p50 * 1e3:.2f} ms"
    )
    print("nothing lost")


if __name__ == "__main__":
    main()
