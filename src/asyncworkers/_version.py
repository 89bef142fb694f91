"""The installed distribution's version: one source of truth, ``pyproject.toml``."""

from __future__ import annotations

from importlib.metadata import version

__all__ = ["__version__"]

__version__: str = version("asyncworkers")
