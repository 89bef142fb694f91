"""``open_store(url)``: a store from a URL, as the CLI's ``--store`` takes it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._protocol import Store

__all__ = ["DEFAULT_URL", "open_store", "postgres_class"]

#: The store of the CLI when neither ``--store`` nor ``ASYNCWORKERS_STORE`` names one.
DEFAULT_URL = "sqlite:///asyncworkers.db"

_SQLITE = "sqlite:///"
_POSTGRES = ("postgresql://", "postgres://")


def open_store(url: str = DEFAULT_URL, *, read_only: bool = False) -> Store:
    """The store a URL names, not yet opened: use it as ``async with open_store(url) as s:``
    (or ``await s.open()``; a Manager opens it too).

    *read_only* opens a SQLite file read-only (see :class:`SQLiteStore`), for tools that
    only look; a PostgreSQL store needs no such mode (a full disk is its server's).

    - ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``: :class:`SQLiteStore`
    - ``postgresql://user@host:port/db`` (or ``postgres://``): ``PostgresStore``, imported
      only then (it needs asyncpg)

    ValueError for any other URL, naming it.
    """
    if not isinstance(url, str):
        raise TypeError(f"store URL must be a str, got {url!r}")
    if url.startswith(_SQLITE):
        path = url[len(_SQLITE) :]
        if not path:
            raise ValueError(f"store URL {url!r} names no file: use sqlite:///path/to/file.db")
        from ._sqlite import SQLiteStore  # here: the CLI's parser reads DEFAULT_URL alone

        return SQLiteStore(path, read_only=read_only)
    if url.startswith(_POSTGRES):
        return postgres_class()(url)  # type: ignore[no-any-return]
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise ValueError(
        f"unknown store URL {url!r} (scheme {scheme!r}): use sqlite:///path/to/file.db "
        "or postgresql://user@host:port/database"
    )


def postgres_class() -> Any:
    """``PostgresStore``, imported now (ValueError naming why when it cannot be)."""
    try:
        module = importlib.import_module("asyncworkers.store._postgres")
    except ImportError as exc:
        raise ValueError(
            f"a postgresql:// store needs the PostgreSQL support, which cannot be imported: {exc}"
        ) from None
    return module.PostgresStore
