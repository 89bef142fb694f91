"""Module-level task functions for the ``dispatch(kind="process")`` tests (pickled by name)."""

from __future__ import annotations

import os
from typing import Any


def square_in_child(task_id: int, config: int, task: int, metadata: dict[str, Any]) -> int:
    metadata["pid"] = os.getpid()
    return task * task + config
