"""The ``asyncworkers`` command line (also ``python -m asyncworkers``).

``demo`` runs a mixed workload on a :class:`~asyncworkers.Runtime`; every other command has
a module of its own here, registered in ``_main``.
"""

from __future__ import annotations

from ._main import build_parser, main

__all__ = ("build_parser", "main")
