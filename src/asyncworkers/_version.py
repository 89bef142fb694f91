"""The version: one source of truth, read by hatch at build time (``[tool.hatch.version]``).

A literal, not ``importlib.metadata.version()``: that import alone costs ``import
asyncworkers`` a third of what ``import anyio`` costs (tests/test_imports.py checks that the
installed distribution agrees).
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
