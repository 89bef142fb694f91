"""What a load run is asked to do: :class:`LoadConfig`, its stages, and the text forms the
command line accepts for durations, stages and latency targets.

Every check raises where the mistake is made: ``TypeError`` for a wrong type, ``ValueError``
naming the field and the value for a wrong value. The parsers raise ``ValueError`` with a
message the command line prints after the option's name.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_MAX_BODY",
    "METHODS",
    "LoadConfig",
    "Stage",
    "parse_duration",
    "parse_latency",
    "parse_size",
    "parse_stages",
    "validate_url",
]

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)

#: The largest response body a request reads (``max_body``) unless told otherwise: larger
#: than the files a site serves, small enough that an endless body is cut in well under a
#: second on a fast link. Bodies are streamed and discarded, so memory never depends on it.
DEFAULT_MAX_BODY = 64 * 2**20
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Seconds from ``10``, ``10s``, ``2m``, ``1h`` or ``500ms``; must be more than zero."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"expected a duration such as 10, 10s, 2m or 500ms, got {text!r}")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not seconds > 0:
        raise ValueError(f"expected a duration of more than zero, got {text!r}")
    return seconds


def parse_size(text: str) -> int:
    """Bytes from ``65536``, ``64KiB``, ``10MB``, ``1GiB`` (KB/MB/GB are powers of 1000,
    KiB/MiB/GiB of 1024); must be at least one byte."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"expected a size such as 65536, 64KiB, 10MB or 1GiB, got {text!r}")
    unit = (match.group(2) or "b").lower()
    base = 1024 if "i" in unit else 1000
    power = "bkmgt".index(unit[0])
    size = int(float(match.group(1)) * base**power)
    if size < 1:
        raise ValueError(f"expected a size of at least 1 byte, got {text!r}")
    return size


def parse_latency(text: str) -> float:
    """Seconds from a latency target such as ``50ms``, ``0.2s`` or ``50`` (milliseconds)."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"expected a latency such as 50ms or 0.2s, got {text!r}")
    unit = match.group(2) or "ms"  # a bare number is milliseconds, as in every report
    seconds = float(match.group(1)) * _UNIT_SECONDS[unit]
    if not seconds > 0:
        raise ValueError(f"expected a latency of more than zero, got {text!r}")
    return seconds


@dataclass(frozen=True)
class Stage:
    """Ramp the arrival rate linearly to ``rate`` requests/s over ``duration`` seconds."""

    duration: float
    rate: float

    def __post_init__(self) -> None:
        if not (isinstance(self.duration, int | float) and math.isfinite(self.duration)):
            raise TypeError(f"Stage.duration must be a finite number, got {self.duration!r}")
        if not (isinstance(self.rate, int | float) and math.isfinite(self.rate)):
            raise TypeError(f"Stage.rate must be a finite number, got {self.rate!r}")
        if self.duration <= 0:
            raise ValueError(f"Stage.duration must be > 0, got {self.duration}")
        if self.rate < 0:
            raise ValueError(f"Stage.rate must be >= 0, got {self.rate}")


def parse_stages(text: str) -> tuple[Stage, ...]:
    """Stages from ``10s:100,30s:1000``: each ``DURATION:RATE``, at least one rate above 0."""
    stages: list[Stage] = []
    for part in text.split(","):
        duration, sep, rate = part.partition(":")
        if not sep:
            raise ValueError(f"expected DURATION:RATE[,DURATION:RATE...], got {text!r}")
        try:
            stages.append(Stage(parse_duration(duration), float(rate)))
        except (TypeError, ValueError):
            raise ValueError(
                f"expected DURATION:RATE[,...] with a duration > 0 and a finite rate >= 0, "
                f"got {part!r} in {text!r}"
            ) from None
    if not any(stage.rate > 0 for stage in stages):
        raise ValueError(f"expected at least one stage with a rate above 0, got {text!r}")
    return tuple(stages)


def validate_url(url: str) -> str:
    """The URL itself when it is an absolute http(s) URL with a host; ValueError otherwise."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {type(url).__name__}")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise ValueError(f"expected an http:// or https:// URL, got {url!r} ({exc})") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {url!r}")
    del port
    return url


def _positive(name: str, value: object, kind: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be a number, got {value!r}")
    assert isinstance(value, int | float)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class LoadConfig:
    """One load run against one URL.

    - ``concurrency``: at most this many requests in flight (and connections open). Alone it
      is the closed model: that many requests always in flight.
    - ``rate`` (requests/s) or ``stages``: the open model; requests start at their intended
      send times whatever the responses do, and latency counts from those times.
      ``concurrency`` then caps the requests in flight.
    - ``duration`` (s) and ``requests``: the run stops at whichever comes first. With
      neither (and no stages) it runs for 10 s; with stages it lasts as long as they do.
    - ``processes``: that many processes, one event loop and one aiohttp session each; the
      concurrency, rate and request count are shared out and the reports merged.
    - ``max_body``: bytes of a response body read at most. Bodies are streamed, counted and
      discarded; past this the response counts as a ``body_too_large`` error and its
      connection is dropped. A body that never ends is a ``timeout`` (``timeout`` bounds
      the whole request, body included).
    """

    url: str
    concurrency: int = 10
    rate: float | None = None
    stages: tuple[Stage, ...] = ()
    duration: float | None = None
    requests: int | None = None
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    timeout: float = 10.0
    processes: int = 1
    max_body: int = DEFAULT_MAX_BODY

    def __post_init__(self) -> None:
        validate_url(self.url)
        _positive("concurrency", self.concurrency, int)
        if self.rate is not None:
            _positive("rate", self.rate, (int, float))
        if not isinstance(self.stages, tuple) or not all(isinstance(s, Stage) for s in self.stages):
            raise TypeError(f"stages must be a tuple of Stage, got {self.stages!r}")
        if self.stages and self.rate is not None:
            raise ValueError("give rate or stages, not both (stages start from rate 0)")
        if self.stages and not any(s.rate > 0 for s in self.stages):
            raise ValueError("stages need at least one stage with a rate above 0")
        if self.stages and self.duration is not None:
            raise ValueError("give duration or stages, not both (stages set the duration)")
        if self.duration is not None:
            _positive("duration", self.duration, (int, float))
        if self.requests is not None:
            _positive("requests", self.requests, int)
        if not isinstance(self.method, str) or self.method.upper() not in METHODS:
            raise ValueError(f"method must be one of {sorted(METHODS)}, got {self.method!r}")
        object.__setattr__(self, "method", self.method.upper())
        if not isinstance(self.headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()
        ):
            raise TypeError(f"headers must map str to str, got {self.headers!r}")
        object.__setattr__(self, "headers", dict(self.headers))  # a copy (and picklable)
        if self.body is not None and not isinstance(self.body, bytes):
            raise TypeError(f"body must be bytes or None, got {type(self.body).__name__}")
        _positive("timeout", self.timeout, (int, float))
        _positive("processes", self.processes, int)
        _positive("max_body", self.max_body, int)
        if self.requests is not None and self.requests < self.processes:
            raise ValueError(
                f"requests ({self.requests}) must be at least processes ({self.processes}): "
                "each process sends its share"
            )
        if self.processes > self.concurrency:
            raise ValueError(
                f"processes ({self.processes}) must not exceed concurrency "
                f"({self.concurrency}): each process needs at least one connection"
            )

    @property
    def open_model(self) -> bool:
        """True when requests are paced by intended send times (``rate`` or ``stages``)."""
        return self.rate is not None or bool(self.stages)

    @property
    def run_seconds(self) -> float | None:
        """How long requests are sent for: the stages, the duration, 10 s, or no limit when
        only a request count is given."""
        if self.stages:
            return sum(stage.duration for stage in self.stages)
        if self.duration is not None:
            return self.duration
        return None if self.requests is not None else 10.0

    def share(self, index: int, count: int) -> LoadConfig:
        """The part of this run that process *index* of *count* does: its share of the
        concurrency and request count, and of the rate (each stage's rate scaled by it)."""

        def part(total: int) -> int:
            return total // count + (1 if index < total % count else 0)

        fraction = part(self.concurrency) / self.concurrency
        return replace(
            self,
            concurrency=part(self.concurrency),
            rate=None if self.rate is None else self.rate * fraction,
            stages=tuple(Stage(s.duration, s.rate * fraction) for s in self.stages),
            requests=None if self.requests is None else part(self.requests),
            duration=self.duration,
            processes=1,
        )


def auto_processes() -> int:
    """The number of CPUs this process may run on (``--processes auto``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1
