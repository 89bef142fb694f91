"""Retry: validation names the argument and value; delays follow the documented formula."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncworkers import JobCancelled, Retry


def test_defaults() -> None:
    retry = Retry()
    assert retry.attempts == 3
    assert retry.backoff == 0.0
    assert retry.multiplier == 2.0
    assert retry.max_backoff is None
    assert retry.jitter == 0.0
    assert retry.retry_on == (Exception,)


def test_is_frozen() -> None:
    retry = Retry()
    with pytest.raises(dataclasses.FrozenInstanceError):
        retry.attempts = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "name", "shown"),
    [
        ({"attempts": "3"}, "attempts", "'3'"),
        ({"attempts": 2.0}, "attempts", "2.0"),
        ({"attempts": True}, "attempts", "True"),
        ({"attempts": None}, "attempts", "None"),
        ({"backoff": "1"}, "backoff", "'1'"),
        ({"backoff": False}, "backoff", "False"),
        ({"multiplier": None}, "multiplier", "None"),
        ({"max_backoff": "5"}, "max_backoff", "'5'"),
        ({"jitter": [0.1]}, "jitter", "[0.1]"),
        ({"retry_on": ValueError}, "retry_on", "ValueError"),
        ({"retry_on": (ValueError, 3)}, "retry_on", "3"),
        ({"retry_on": [ValueError]}, "retry_on", "ValueError"),
        ({"retry_on": (int,)}, "retry_on", "int"),
    ],
)
def test_wrong_types_raise_type_error_naming_argument_and_value(
    kwargs: dict[str, Any], name: str, shown: str
) -> None:
    with pytest.raises(TypeError) as info:
        Retry(**kwargs)
    message = str(info.value)
    assert name in message
    assert shown in message


@pytest.mark.parametrize(
    ("kwargs", "name", "shown"),
    [
        ({"attempts": 0}, "attempts", "0"),
        ({"attempts": -1}, "attempts", "-1"),
        ({"backoff": -0.5}, "backoff", "-0.5"),
        ({"backoff": math.nan}, "backoff", "nan"),
        ({"multiplier": 0.5}, "multiplier", "0.5"),
        ({"multiplier": -2}, "multiplier", "-2"),
        ({"max_backoff": -1.0}, "max_backoff", "-1.0"),
        ({"jitter": -0.1}, "jitter", "-0.1"),
        ({"jitter": 1.5}, "jitter", "1.5"),
        ({"jitter": math.nan}, "jitter", "nan"),
    ],
)
def test_bad_values_raise_value_error_naming_argument_and_value(
    kwargs: dict[str, Any], name: str, shown: str
) -> None:
    with pytest.raises(ValueError, match=name) as info:
        Retry(**kwargs)
    assert shown in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 1},
        {"backoff": 0},
        {"backoff": 0.25},
        {"multiplier": 1},
        {"max_backoff": 0},
        {"jitter": 0},
        {"jitter": 1},
        {"retry_on": ()},
        {"retry_on": (KeyError, OSError)},
        {"retry_on": (BaseException,)},
    ],
)
def test_boundary_values_are_accepted(kwargs: dict[str, Any]) -> None:
    Retry(**kwargs)


def test_should_retry_counts_every_attempt() -> None:
    retry = Retry(attempts=3)
    error = ValueError("boom")
    assert retry.should_retry(error, 1)
    assert retry.should_retry(error, 2)
    assert not retry.should_retry(error, 3)
    assert not retry.should_retry(error, 4)


def test_one_attempt_never_retries() -> None:
    assert not Retry(attempts=1).should_retry(ValueError(), 1)


def test_should_retry_filters_by_retry_on() -> None:
    retry = Retry(attempts=5, retry_on=(KeyError, OSError))
    assert retry.should_retry(KeyError("k"), 1)
    assert retry.should_retry(FileNotFoundError(), 1)  # a subclass of OSError
    assert not retry.should_retry(ValueError(), 1)
    assert not Retry(retry_on=()).should_retry(ValueError(), 1)


def test_cancellation_is_not_retried_by_default() -> None:
    # JobCancelled is an Exception; the runtime never retries a cancelled job, and a policy
    # that names only real errors does not qualify it either.
    assert not Retry(retry_on=(OSError,)).should_retry(JobCancelled(), 1)


def test_no_backoff_means_no_delay() -> None:
    retry = Retry(attempts=10)
    assert [retry.delay(n) for n in range(1, 6)] == [0.0] * 5


def test_exponential_backoff() -> None:
    retry = Retry(attempts=10, backoff=0.5, multiplier=3.0)
    assert retry.delay(1) == pytest.approx(0.5)
    assert retry.delay(2) == pytest.approx(1.5)
    assert retry.delay(3) == pytest.approx(4.5)
    assert retry.delay(4) == pytest.approx(13.5)


def test_multiplier_one_is_constant_backoff() -> None:
    retry = Retry(attempts=10, backoff=0.2, multiplier=1)
    assert [retry.delay(n) for n in range(1, 8)] == pytest.approx([0.2] * 7)


def test_max_backoff_caps_the_delay() -> None:
    retry = Retry(attempts=10, backoff=1.0, multiplier=2.0, max_backoff=5.0)
    assert [retry.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_max_backoff_zero_means_no_wait() -> None:
    retry = Retry(attempts=10, backoff=1.0, max_backoff=0.0)
    assert retry.delay(3) == 0.0


@given(
    backoff=st.floats(0.001, 10),
    multiplier=st.floats(1, 4),
    jitter=st.floats(0, 1),
    attempt=st.integers(1, 12),
    max_backoff=st.none() | st.floats(0, 100),
)
def test_jitter_stretches_within_bounds(
    backoff: float, multiplier: float, jitter: float, attempt: int, max_backoff: float | None
) -> None:
    retry = Retry(
        attempts=20, backoff=backoff, multiplier=multiplier, jitter=jitter, max_backoff=max_backoff
    )
    base = backoff * multiplier ** (attempt - 1)
    if max_backoff is not None:
        base = min(base, max_backoff)
    delay = retry.delay(attempt)
    assert base * (1 - 1e-9) <= delay <= base * (1 + jitter) * (1 + 1e-9)


def test_jitter_actually_varies() -> None:
    retry = Retry(attempts=5, backoff=1.0, jitter=1.0)
    delays = {retry.delay(1) for _ in range(200)}
    assert len(delays) > 1
    assert all(1.0 <= d <= 2.0 for d in delays)


def test_long_runs_of_attempts_stay_capped_instead_of_overflowing() -> None:
    # 2.0 ** 1100 overflows a float; with a cap the delay is simply the cap.
    retry = Retry(attempts=5000, backoff=0.1, max_backoff=30.0)
    assert retry.delay(1100) == 30.0
    assert retry.delay(4999) == 30.0


def test_long_runs_of_attempts_without_cap_wait_very_long() -> None:
    retry = Retry(attempts=5000, backoff=0.1)
    assert retry.delay(1100) == math.inf
