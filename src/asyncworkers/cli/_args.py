"""Argument types shared by the ``asyncworkers`` commands.

Each raises :class:`argparse.ArgumentTypeError` with a message that names what was
expected, so that argparse prints ``argument --jobs: expected ...`` and exits with status 2
(a plain ``ValueError`` would make it print the converter's private name instead).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TypeAlias

__all__ = ["Commands", "positive_int"]

if TYPE_CHECKING:
    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Commands: TypeAlias = argparse._SubParsersAction


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value
