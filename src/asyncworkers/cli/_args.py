"""Argument types shared by the ``asyncworkers`` commands.

Each raises :class:`argparse.ArgumentTypeError` with a message that names what was
expected, so that argparse prints ``argument --jobs: expected ...`` and exits with status 2
(a plain ``ValueError`` would make it print the converter's private name instead).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, NoReturn, TypeAlias

__all__ = ["CommandParser", "Commands", "positive_int"]


class CommandParser(argparse.ArgumentParser):
    """The parser of one command: a mistake is one line, ``asyncworkers CMD: error: ...``,
    exit status 2, like every mistake the commands find later (the usage is in ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


if TYPE_CHECKING:
    Commands: TypeAlias = argparse._SubParsersAction[CommandParser]
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
