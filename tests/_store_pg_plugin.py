"""Until tests/_store_support.py registers PostgreSQL itself: ``pytest -p _store_pg_plugin``
(with tests/ on PYTHONPATH) adds it to the store-agnostic tests."""

from __future__ import annotations

from _store_pg import postgres_factory
from _store_support import STORE_FACTORIES

STORE_FACTORIES.setdefault("postgresql", postgres_factory)
