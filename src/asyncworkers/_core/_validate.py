"""The checks every public entry point makes of its arguments, in one place.

Each raises at the call that made the mistake, naming the argument and the value:
``TypeError`` for the wrong type, ``ValueError`` for a value out of range. Numbers of
seconds accept ints and floats, ``math.inf`` meaning "no limit"; an int too large for a
float (``10**400``) is refused here rather than overflowing later, deep in a timer.
"""

from __future__ import annotations

import math
from reprlib import repr as short

__all__ = ["check_count", "check_instance", "check_number", "check_seconds"]


def check_count(name: str, value: object, *, minimum: int = 1) -> int:
    """An int (not a bool) of at least *minimum*."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {short(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {short(value)}")
    return value


def check_number(
    name: str, value: object, *, minimum: float, maximum: float = math.inf, open_min: bool = False
) -> float:
    """A real number (int or float, not a bool, not NaN) within the bounds, as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {short(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{name} is too large to be a number of seconds: {short(value)}") from None
    too_low = number <= minimum if open_min else number < minimum
    if math.isnan(number) or too_low or number > maximum:
        low = f"> {minimum:g}" if open_min else f">= {minimum:g}"
        bounds = low if maximum == math.inf else f"{low} and <= {maximum:g}"
        raise ValueError(f"{name} must be {bounds}, got {short(value)}")
    return number


def check_seconds(name: str, value: object, *, allow_zero: bool) -> float:
    """A number of seconds: > 0 (or >= 0 with *allow_zero*); ``math.inf`` is no limit."""
    if type(value) is float and value > 0.0:  # the common case, checked first (not NaN)
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {short(value)}")
    return check_number(name, value, minimum=0.0, open_min=not allow_zero)


def check_instance(name: str, value: object, expected: type) -> None:
    """None, or an instance of *expected*."""
    if value is not None and not isinstance(value, expected):
        raise TypeError(f"{name} must be a {expected.__name__} or None, got {short(value)}")
