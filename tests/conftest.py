"""Every async test runs twice: on the stock asyncio loop and on uvloop. Every test that
takes ``store_factory`` runs once per store (tests/_store_support.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from _helpers import LOOP_FACTORIES
from _hosts import Network, network
from _store_support import STORE_FACTORIES, StoreFactory

# Hypothesis: no per-example deadline and no "too slow" check anywhere. CI shares two cores
# with other work, and an example that takes 200 ms there is load, not a fault; the examples'
# results are what the tests judge.
settings.register_profile(
    "asyncworkers", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("asyncworkers")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], Any]]:
    return LOOP_FACTORIES


# Stores: the store-agnostic tests run once per store factory (tests/_store_support.py).


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A fresh, empty store of each kind in STORE_FACTORIES."""
    with STORE_FACTORIES[request.param](tmp_path) as factory:
        yield factory


# Hosts: network namespaces on a private bridge (tests/_hosts.py); needs root, fails without.


@pytest.fixture(scope="module")
def hosts() -> Iterator[Network]:
    """Three hosts on a private bridge, for the module; removed even when a test fails."""
    with network(3) as net:
        yield net
