"""Argument types shared by the ``asyncworkers`` commands.

Each raises :class:`argparse.ArgumentTypeError` with a message that names what was
expected, so that argparse prints ``argument --jobs: expected ...`` and exits with status 2
(a plain ``ValueError`` would make it print the converter's private name instead).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, NoReturn, TypeAlias

__all__ = ["CommandParser", "Commands", "explained", "positive_int"]


class CommandParser(argparse.ArgumentParser):
    """The parser of one command: a mistake is one line, ``asyncworkers CMD: error: ...``,
    exit status 2, like every mistake the commands find later (the usage is in ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {explained(message)}\n")


# argparse reads a value such as ``-3s`` as an option and says only "expected one
# argument": for the options that take a length of time, say what a value looks like.
_TIME_OPTIONS = {
    "-d/--duration": "a duration such as 10, 10s or 500ms",
    "--timeout": "a duration such as 10, 10s or 500ms",
    "--p99": "a latency such as 50ms or 0.2s",
    "--stages": "stages such as 10s:100,30s:1000",
    "--older-than": "a time such as 90s, 15m, 12h or 7d",
    "--retention": "a time such as 90s, 15m, 12h or 7d",
    "--delay": "seconds, such as 30 or 2.5",
}


def explained(message: str) -> str:
    """*message*, with what the option takes when argparse found no value for it."""
    if message.endswith("expected one argument"):
        for name, takes in _TIME_OPTIONS.items():
            if f"argument {name}:" in message:
                return f"{message}: {takes} (durations must be positive)"
    return message


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
