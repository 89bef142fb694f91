"""Every async test runs twice: on the stock asyncio loop and on uvloop. Every test that
takes ``store_factory`` runs once per store (tests/_store_support.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import uvloop

from _store_support import STORE_FACTORIES, StoreFactory

LOOP_FACTORIES: Mapping[str, Any] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, Any]:
    return LOOP_FACTORIES


# Stores: the store-agnostic tests run once per store factory (tests/_store_support.py).


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A fresh, empty store of each kind in STORE_FACTORIES."""
    with STORE_FACTORIES[request.param](tmp_path) as factory:
        yield factory
