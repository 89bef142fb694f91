"""The values a store accepts, checked once for every store before any reaches a driver.

Each store's column types bound what it can hold, and the two disagree: SQLite takes any
64-bit integer and a NUL inside text, PostgreSQL's ``integer`` columns are 32 bits and its
``text`` refuses NUL; a lone surrogate cannot be encoded as UTF-8 for either. Without one
check, the same bad value is stored by one store and a raw driver error on the other. So
every value a user hands a store goes through here first and is refused with a
``TypeError`` (wrong type) or ``ValueError`` (out of range) whose message starts with the
field's name; what passes, both stores store and give back alike.

The accepted ranges (docs/store.md, "Accepted values"):

- text fields (``task``, ``queue``, ``key``): a non-empty ``str`` of at most
  :data:`MAX_NAME_BYTES` UTF-8 bytes, without NUL (U+0000) or a lone surrogate;
- ``priority``: a 32-bit signed int, :data:`MIN_PRIORITY` to :data:`MAX_PRIORITY`;
- ``max_attempts``: 1 to :data:`MAX_ATTEMPTS` (2**31 - 1);
- times (``run_at``, and ``now + delay``): unix seconds from 0 (1970) to :data:`MAX_TIME`
  (the last second of year 9999), finite;
- arguments and results: JSON (no NaN or infinity), without NUL or a lone surrogate in any
  string or key, arguments at most :data:`MAX_PAYLOAD_BYTES` UTF-8 bytes;
- job ids: ints from 1 to 2**63 - 1; ``limit`` of ``dead()``: 0 to 2**63 - 1.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_ERROR_CHARS",
    "MAX_ID",
    "MAX_NAME_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_PRIORITY",
    "MAX_TIME",
    "MIN_PRIORITY",
    "check_claim",
    "check_claimed",
    "check_held",
    "check_id",
    "check_int",
    "check_job",
    "check_json_text",
    "check_limit",
    "check_queue_filter",
    "check_text",
    "check_time",
    "check_timeout",
    "clean_error",
    "encode_json",
    "retry_time",
    "run_at_from",
    "show",
]

#: The largest ``args`` JSON text (UTF-8 bytes) a store accepts at enqueue; a larger row found
#: at claim time (written behind the store's back) is dead-lettered, never run.
MAX_PAYLOAD_BYTES = 1_000_000

#: The bounds of ``priority``: PostgreSQL's ``integer`` (32 bits, signed).
MIN_PRIORITY = -(2**31)
MAX_PRIORITY = 2**31 - 1

#: The largest ``max_attempts`` (PostgreSQL's ``integer``).
MAX_ATTEMPTS = 2**31 - 1

#: The largest job id (both stores' ids are 64-bit signed), and of a ``limit``.
MAX_ID = 2**63 - 1

#: Unix seconds of 9999-12-31T23:59:59Z: the latest ``run_at`` (a timestamp past year 9999
#: overflows PostgreSQL's date arithmetic and most clients' date types).
MAX_TIME = 253_402_300_799.0

#: The longest task, queue name or key, in UTF-8 bytes: well under what a PostgreSQL index
#: entry holds (2,704 bytes), since the key is in a unique index.
MAX_NAME_BYTES = 1024

#: The longest error text a store keeps (characters); the rest is cut.
MAX_ERROR_CHARS = 10_000

# One encoder for every job: json.dumps with options builds a new one per call (~8 us).
# ensure_ascii=False keeps a lone surrogate as it is, so that the UTF-8 check below finds it
# (escaped as "\ud800" it would pass, and come back out of json.loads unpaired).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

# "\u0000" escaped by json.dumps (a NUL), not preceded by an escaped backslash ("\\u0000"
# is the six characters \u0000 in a string, which is fine).
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def show(value: object, limit: int = 60) -> str:
    """``ascii(value)``, cut to about *limit* characters: safe to print whatever it holds."""
    if isinstance(value, int) and abs(value) > 10**100:  # str() of a huge int may raise
        return f"an int of {value.bit_length()} bits"
    text = ascii(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_text(name: str, value: object, *, limit: int = MAX_NAME_BYTES) -> str:
    """*value*, a non-empty str that both stores can hold in a text column."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__} {show(value)}")
    if not value:
        raise ValueError(f"{name} must not be empty")
    if "\x00" in value:
        raise ValueError(
            f"{name} must not contain NUL (U+0000), which PostgreSQL cannot store: {show(value)}"
        )
    size = _utf8_size(name, value)
    if size > limit:
        raise ValueError(f"{name} is {size} bytes of UTF-8, more than the limit of {limit}")
    return value


def _utf8_size(name: str, text: str) -> int:
    if text.isascii():
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{name} contains a lone surrogate {text[exc.start]!a} at index "
            f"{exc.start}, which is not Unicode text (UTF-8 cannot encode it)"
        ) from None


def check_int(name: str, value: object, low: int, high: int) -> int:
    """*value*, an int (not a bool) from *low* to *high*."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {show(value)}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low} to {high}, got {show(value)}")
    return value


def check_time(name: str, value: object) -> float:
    """*value*, unix seconds from 1970 to the end of year 9999."""
    seconds = _number(name, value)
    if not 0 <= seconds <= MAX_TIME:
        raise ValueError(
            f"{name} must be unix seconds from 0 (1970) to {MAX_TIME:.0f} (year 9999), "
            f"got {show(value)}"
        )
    return seconds


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"{name} must be a number of seconds, got {type(value).__name__} {show(value)}"
        )
    if isinstance(value, int):  # float(2**2000) would raise OverflowError
        if abs(value) > 2**1000:
            return math.inf if value > 0 else -math.inf
        return float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must be a number of seconds, got nan")
    return value


def run_at_from(delay: object, run_at: object, now: float) -> float | None:
    """The ``run_at`` that ``delay`` or ``run_at`` (at most one of them) asks for."""
    if delay is not None and run_at is not None:
        raise ValueError("give run_at or delay, not both")
    if delay is not None:
        seconds = _number("delay", delay)
        if not 0 <= seconds <= MAX_TIME - now:
            raise ValueError(
                f"delay must be seconds from 0 to {MAX_TIME - now:.0f} (the job must be due "
                f"before the end of year 9999), got {show(delay)}"
            )
        return now + seconds
    if run_at is not None:
        return check_time("run_at", run_at)
    return None


def check_timeout(name: str, value: object) -> float | None:
    """*value*: None (no limit) or seconds >= 0 (infinity is no limit too)."""
    if value is None:
        return None
    seconds = _number(name, value)
    if seconds < 0:
        raise ValueError(f"{name} must be seconds >= 0 or None, got {show(value)}")
    return None if math.isinf(seconds) else seconds


def check_job(
    task: object,
    args_json: object,
    priority: object,
    queue: object,
    run_at: object,
    max_attempts: object,
    key: object,
) -> None:
    """Every field of one job to enqueue (what ``NewJob`` holds), in that order."""
    if (  # the usual job, at a fraction of the cost of the checks that name what is wrong
        _plain_name(task)
        and _plain_name(queue)
        and (key is None or _plain_name(key))
        and type(priority) is int
        and MIN_PRIORITY <= priority <= MAX_PRIORITY
        and type(max_attempts) is int
        and 1 <= max_attempts <= MAX_ATTEMPTS
        and run_at is None
        and type(args_json) is str
        and args_json.isascii()
        and len(args_json) <= MAX_PAYLOAD_BYTES
        and "\x00" not in args_json
        and "\\u0000" not in args_json
    ):
        return
    check_text("task", task)
    check_json_text("job arguments of", args_json, task=task, limit=MAX_PAYLOAD_BYTES)
    check_int("priority", priority, MIN_PRIORITY, MAX_PRIORITY)
    check_text("queue", queue)
    if run_at is not None:
        check_time("run_at", run_at)
    check_int("max_attempts", max_attempts, 1, MAX_ATTEMPTS)
    if key is not None:
        check_text("key", key)


def _plain_name(text: object) -> bool:
    return (
        type(text) is str
        and 0 < len(text) <= MAX_NAME_BYTES
        and text.isascii()
        and "\x00" not in text
    )


def check_id(value: object, name: str = "id") -> int:
    """A job id: an int from 1 to 2**63 - 1."""
    return check_int(name, value, 1, MAX_ID)


def check_limit(value: object, name: str = "limit") -> int:
    """A row count to return: an int from 0 to 2**63 - 1."""
    return check_int(name, value, 0, MAX_ID)


def check_queue_filter(value: object) -> str | None:
    """The ``queue`` of ``counts()``: None (every queue) or a queue name."""
    return None if value is None else check_text("queue", value)


def check_claim(queues: object, limit: object, lease: object, worker: object) -> list[str] | None:
    """The arguments of ``claim``: *queues* as a list (or None), the rest checked."""
    check_int("limit", limit, 1, MAX_ID)
    check_lease(lease)
    check_text("worker", worker)
    if queues is None:
        return None
    if isinstance(queues, str | bytes):
        raise TypeError(f"queues must be a list of queue names or None, got {show(queues)}")
    if not isinstance(queues, Iterable):
        raise TypeError(f"queues must be a list of queue names or None, got {show(queues)}")
    names: list[str] = []
    for name in queues:
        names.append(check_text("queues item", name))
    return names


def check_claimed(id: object, token: object) -> None:
    """The ``(id, token)`` of a claim, as the Manager's writes carry it: 64-bit ints."""
    check_id(id)
    check_int("token", token, 0, MAX_ID)


def check_held(held: object) -> list[tuple[int, int]]:
    """``heartbeat``'s *held*: ``(id, token)`` pairs, as a list."""
    if not isinstance(held, Iterable):
        raise TypeError(f"held must be (id, token) pairs, got {show(held)}")
    pairs: list[tuple[int, int]] = []
    for pair in held:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ValueError(f"held must be (id, token) pairs, got {show(pair)}")
        check_claimed(*pair)
        pairs.append((pair[0], pair[1]))
    return pairs


def check_lease(lease: object) -> float:
    """A lease in seconds: > 0 and short enough to end before year 9999."""
    seconds = _number("lease", lease)
    if not 0 < seconds <= MAX_TIME / 2:  # now + lease stays a valid time until ~5000 AD
        raise ValueError(f"lease must be seconds > 0 (and finite), got {show(lease)}")
    return seconds


def retry_time(value: object) -> float | None:
    """``fail``'s *retry_at*: None (dead), or unix seconds, capped at :data:`MAX_TIME`.

    Capped, not refused: it comes from a retry policy's backoff, and a failure must always
    be recordable (a job due in year 9999 waits as long as one due later would).
    """
    if value is None:
        return None
    seconds = _number("retry_at", value)
    return min(max(seconds, 0.0), MAX_TIME)


def clean_error(text: object) -> str:
    """An error text both stores can hold: NUL and lone surrogates written as escapes, cut to
    :data:`MAX_ERROR_CHARS` (it comes from an exception a task raised: never refuse it)."""
    error = text if isinstance(text, str) else str(text)
    error = error[:MAX_ERROR_CHARS]
    if "\x00" in error:
        error = error.replace("\x00", "\\x00")
    if not error.isascii():
        error = error.encode("utf-8", "backslashreplace").decode("utf-8")
    return error


def encode_json(
    name: str, value: object, *, task: object = None, limit: int | None = None, check: bool = True
) -> str:
    """The JSON text of *value*, which both stores hold and give back as it was.

    TypeError for what JSON cannot say (a set, NaN, infinity); ValueError for a NUL or a lone
    surrogate in a string or key, nesting too deep, or more than *limit* UTF-8 bytes. The
    messages start with *name*, followed by *task* when given. ``check=False`` leaves the
    text's checks to the caller (``NewJob`` makes them).
    """
    try:
        text = _ENCODER.encode(value)
    except RecursionError:
        raise ValueError(f"{_label(name, task)} are nested too deeply to be JSON") from None
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{_label(name, task)} are not JSON: {exc}") from None
    if check:
        check_json_text(name, text, task=task, limit=limit)
    return text


def _label(name: str, task: object) -> str:
    # made only for a message: show() of the task costs more than the checks
    return name if task is None else f"{name} {show(task)}"


def check_json_text(
    name: str, text: object, *, task: object = None, limit: int | None = None
) -> str:
    """JSON text (as :func:`encode_json` makes it) that both stores hold alike."""
    if (  # the usual text, checked in a few C scans
        type(text) is str
        and text.isascii()
        and "\x00" not in text
        and "\\u0000" not in text
        and (limit is None or len(text) <= limit)
    ):
        return text
    name = _label(name, task)
    if not isinstance(text, str):
        raise TypeError(f"{name} must be JSON text (a str), got {type(text).__name__}")
    if "\x00" in text or ("\\u0000" in text and _ESCAPED_NUL.search(text)):
        raise ValueError(
            f"{name} contain NUL (U+0000) in a string, which PostgreSQL cannot store as "
            "text or jsonb"
        )
    size = _utf8_size(name, text)
    if limit is not None and size > limit:
        raise ValueError(f"{name} are {size} bytes of JSON, more than the limit of {limit}")
    return text
