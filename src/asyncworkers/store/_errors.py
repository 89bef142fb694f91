"""The store's exceptions, under the library's one root ``AsyncworkersError``."""

from __future__ import annotations

from .._core._exceptions import AsyncworkersError

__all__ = ["JobDead", "StoreError", "StoreUnavailable"]


class StoreError(AsyncworkersError):
    """Something went wrong in a durable job store."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or opened; the message names the path or host:port."""


class JobDead(StoreError):
    """``result()`` of a job that ended in the dead letters; the message carries its error."""

    def __init__(self, id: int, error: str | None) -> None:
        super().__init__(f"job {id} is dead: {error or 'no error recorded'}")
        self.id = id
        self.error = error
