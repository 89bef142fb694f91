"""The lifecycle of a runtime, shared by :class:`Runtime` and :class:`SyncRuntime`."""

from __future__ import annotations

import enum

__all__ = ["Lifecycle"]


class Lifecycle(enum.Enum):
    """new -> (starting, SyncRuntime only) -> running -> closing -> closed; never back."""

    NEW = "new"
    STARTING = "starting"
    OPEN = "running"
    CLOSING = "closing"
    CLOSED = "closed"

    def __str__(self) -> str:
        return self.value
