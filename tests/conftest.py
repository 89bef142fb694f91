"""Every async test runs twice: on the stock asyncio loop and on uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
import uvloop

LOOP_FACTORIES: Mapping[str, Any] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, Any]:
    return LOOP_FACTORIES
