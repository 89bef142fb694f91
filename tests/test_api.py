"""The public surface: ``asyncworkers.__all__`` and the names the design promises."""

from __future__ import annotations

import enum

import pytest

import asyncworkers as aw

CONTRACT = frozenset(
    {
        "Runtime",
        "WorkUnit",
        "Job",
        "Priority",
        "JobState",
        "Retry",
        "CancellationToken",
        "current_job",
        "check_cancelled",
        "Metrics",
        "AsyncworkersError",
        "JobCancelled",
        "JobTimeout",
        "QueueFull",
        "RuntimeClosed",
        "WorkerCrashed",
    }
)


def test_all_is_a_sorted_tuple_of_unique_names() -> None:
    assert isinstance(aw.__all__, tuple)
    assert all(isinstance(name, str) for name in aw.__all__)
    assert list(aw.__all__) == sorted(aw.__all__)
    assert len(set(aw.__all__)) == len(aw.__all__)


def test_every_name_in_all_exists() -> None:
    missing = [name for name in aw.__all__ if not hasattr(aw, name)]
    assert missing == []


def test_all_holds_the_contract() -> None:
    # More names (SyncRuntime, run, ...) may come; none of these may go.
    assert set(aw.__all__) >= CONTRACT


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from asyncworkers import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(aw.__all__)


def test_contract_names_are_distinct_objects() -> None:
    # Each public name is one object: no accidental aliasing of two contract names.
    objects = [getattr(aw, name) for name in sorted(CONTRACT)]
    assert len({id(obj) for obj in objects}) == len(objects)


@pytest.mark.parametrize(
    "name", ["JobCancelled", "JobTimeout", "QueueFull", "RuntimeClosed", "WorkerCrashed"]
)
def test_errors_derive_from_the_root_and_never_from_cancelled_error(name: str) -> None:
    import asyncio

    cls = getattr(aw, name)
    assert issubclass(cls, aw.AsyncworkersError)
    assert issubclass(cls, Exception)
    assert not issubclass(cls, asyncio.CancelledError)


def test_root_error_is_an_exception() -> None:
    assert issubclass(aw.AsyncworkersError, Exception)


def test_job_timeout_is_a_timeout_error() -> None:
    assert issubclass(aw.JobTimeout, TimeoutError)


def test_job_cancelled_carries_its_reason() -> None:
    assert aw.JobCancelled("why").reason == "why"
    assert "why" in str(aw.JobCancelled("why"))
    assert aw.JobCancelled().reason is None
    assert str(aw.JobCancelled())  # a default message, never empty


def test_priority_levels() -> None:
    assert issubclass(aw.Priority, enum.IntEnum)
    assert [(p.name, int(p)) for p in aw.Priority] == [
        ("LOWEST", 0),
        ("LOW", 1),
        ("NORMAL", 2),
        ("HIGH", 3),
        ("HIGHEST", 4),
    ]


def test_job_states() -> None:
    assert {s.name for s in aw.JobState} == {
        "PENDING",
        "RUNNING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
    }


def test_version_is_a_string() -> None:
    assert isinstance(aw.__version__, str)
