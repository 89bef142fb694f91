"""Every async test runs on the loop its id names: ``[asyncio]`` or ``[uvloop]``.

The loops come from ``pytest_asyncio_loop_factories`` (tests/conftest.py). If that hook
stopped working, or named a factory wrongly, every async test would still pass, on whatever
loop it got; this test is the one that notices.
"""

from __future__ import annotations

import asyncio

import pytest
import uvloop

import asyncworkers as aw
from _helpers import LOOP_FACTORIES, double, no_hang

# The exact class of loop each id stands for.
LOOP_TYPES: dict[str, type[asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.SelectorEventLoop,
    "uvloop": uvloop.Loop,
}


def test_every_loop_the_tests_run_on_has_a_known_type() -> None:
    assert set(LOOP_FACTORIES) == set(LOOP_TYPES)
    for name, factory in LOOP_FACTORIES.items():
        loop = factory()
        try:
            assert type(loop) is LOOP_TYPES[name], f"factory {name!r} makes {type(loop)!r}"
        finally:
            loop.close()


async def test_the_running_loop_is_the_one_the_test_id_names(
    request: pytest.FixtureRequest,
) -> None:
    callspec = getattr(request.node, "callspec", None)
    assert callspec is not None, "this async test was not parametrized over the loops"
    name = callspec.id
    assert name in LOOP_TYPES, f"unknown loop id {name!r}"
    running = asyncio.get_running_loop()
    assert type(running) is LOOP_TYPES[name], (
        f"the test is named [{name}] but runs on {type(running).__module__}."
        f"{type(running).__qualname__}"
    )

    async def loop_of_the_job() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    async with aw.Runtime(2) as rt:
        with no_hang():
            assert await rt.run(double, 21) == 42
            assert await rt.run(loop_of_the_job) is running  # jobs run on that loop too
