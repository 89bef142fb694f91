"""Public names imported on first use (PEP 562 module ``__getattr__``).

``import asyncworkers`` stays light (asyncio and anyio's task machinery alone cost twice what
``import anyio`` does): each public module says where its names live, and a name's module is
imported the first time the name is read. tests/test_imports.py guards the import graph.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module


def lazy_names(
    module: str,
    homes: Mapping[str, str],
    *,
    anchor: str | None = None,
    loaders: Mapping[str, Callable[[], object]] | None = None,
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of *module*.

    *homes* maps a name to the module it lives in, relative to *anchor* (the module itself
    by default). A name found there becomes a plain attribute of *module*. *loaders* make the
    names that need more than an import (a subpackage, a class whose driver may be missing);
    their values are not kept, so a failure is raised again at the next use.
    """
    namespace = sys.modules[module].__dict__
    package = anchor or module
    special = dict(loaders or {})

    def __getattr__(name: str) -> object:
        load = special.get(name)
        if load is not None:
            return load()
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(import_module(home, package), name)
        namespace[name] = value  # from now on a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *namespace.get("__all__", ()), *special})

    return __getattr__, __dir__
