from __future__ import annotations

import asyncio

import asyncworkers as aw


async def double(x: int) -> int:
    return 2 * x


async def test_runs_on_both_loops() -> None:
    async with aw.Runtime(2) as rt:
        assert await rt.run(double, 21) == 42
    assert type(asyncio.get_running_loop()).__module__.split(".")[0] in {"asyncio", "uvloop"}
