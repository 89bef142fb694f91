"""Every async test runs twice: on the stock asyncio loop and on uvloop."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from _helpers import LOOP_FACTORIES


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], Any]]:
    return LOOP_FACTORIES
