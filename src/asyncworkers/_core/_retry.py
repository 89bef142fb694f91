"""Retry policy: how many attempts, how long to wait between them, which errors qualify."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._validate import check_count, check_number

__all__ = ["Retry"]


@dataclass(frozen=True, slots=True)
class Retry:
    """Try a job again when it fails.

    ``attempts`` is the total number of attempts, the first one included, so
    ``Retry(attempts=1)`` never retries. Before attempt *n* + 1 the job waits
    ``backoff * multiplier ** (n - 1)`` seconds, capped at ``max_backoff`` and stretched by up
    to ``jitter`` (a fraction) at random so that failed jobs do not all come back at once.
    Only exceptions that are instances of ``retry_on`` are retried; a cancelled job never is.
    A job waiting out its backoff holds no worker.
    """

    attempts: int = 3
    backoff: float = 0.0
    multiplier: float = 2.0
    max_backoff: float | None = None
    jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        check_count("Retry(attempts=...)", self.attempts)
        check_number("Retry(backoff=...)", self.backoff, minimum=0.0)
        check_number("Retry(multiplier=...)", self.multiplier, minimum=1.0)
        if self.max_backoff is not None:
            check_number("Retry(max_backoff=...)", self.max_backoff, minimum=0.0)
        check_number("Retry(jitter=...)", self.jitter, minimum=0.0, maximum=1.0)
        if not isinstance(self.retry_on, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in self.retry_on
        ):
            raise TypeError(
                f"Retry(retry_on=...) must be a tuple of exception classes, got {self.retry_on!r}"
            )

    def should_retry(self, exc: BaseException, attempts_made: int) -> bool:
        """True when a job that failed with *exc* after *attempts_made* attempts goes again."""
        return attempts_made < self.attempts and isinstance(exc, self.retry_on)

    def delay(self, attempts_made: int) -> float:
        """Seconds to wait before the attempt that follows attempt number *attempts_made*."""
        if self.backoff == 0.0:
            return 0.0
        try:
            delay = self.backoff * self.multiplier ** (attempts_made - 1)
        except OverflowError:  # float ** raises past ~1e308; only the cap is left to apply
            delay = math.inf
        if self.max_backoff is not None:
            delay = min(delay, self.max_backoff)
        if self.jitter:
            import random  # here: only a retry with jitter needs it

            delay *= 1.0 + random.uniform(0.0, self.jitter)
        return delay
