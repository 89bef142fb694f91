"""Module-level task functions for the ``dispatch(kind="process")`` tests (pickled by name)."""

from __future__ import annotations

import os
from typing import Any


def square_in_child(task_id: int, config: int, task: int, metadata: dict[str, Any]) -> int:
    metadata["pid"] = os.getpid()
    return task * task + config


def die_on(task_id: int, config: Any, task: str, metadata: dict[str, Any]) -> str:
    """Return the task, or end the worker process at once when the task says "die"."""
    if task == "die":
        os._exit(3)
    return task
