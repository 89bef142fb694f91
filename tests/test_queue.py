"""The job queue: higher priority first, FIFO inside a level, any int as a level, tombstones
skipped and swept, and a cost that does not grow with the number of distinct priorities."""

from __future__ import annotations

from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from asyncworkers import JobState, Priority
from asyncworkers._core._queue import JobQueue
from asyncworkers._core._units import Job


class FakeJob:
    """What the queue reads of a job: its priority and its state."""

    def __init__(self, name: str | int, priority: int) -> None:
        self.name = name
        self.priority = priority
        self._state = JobState.PENDING


def job(name: str | int, priority: int) -> Job[Any]:
    return cast(Job[Any], FakeJob(name, priority))


def push(queue: JobQueue, name: str | int, priority: int) -> Job[Any]:
    item = job(name, priority)
    queue.push(item)
    return item


def cancel(queue: JobQueue, item: Job[Any]) -> None:
    """What the runtime does to a queued job it cancels: a tombstone, then a final state."""
    queue.discard(item)
    cast(FakeJob, item)._state = JobState.CANCELLED


def names(jobs: list[Job[Any]]) -> list[str | int]:
    return [cast(FakeJob, item).name for item in jobs]


def pop_all(queue: JobQueue) -> list[str | int]:
    out = []
    while (item := queue.pop()) is not None:
        out.append(cast(FakeJob, item).name)
    return out


def test_empty_queue() -> None:
    queue = JobQueue()
    assert queue.pop() is None
    assert len(queue) == 0
    assert queue.pending == 0
    assert queue.drain() == []


def test_fifo_within_one_level() -> None:
    queue = JobQueue()
    for name in "abcde":
        push(queue, name, 2)
    assert pop_all(queue) == list("abcde")


def test_higher_priority_first() -> None:
    queue = JobQueue()
    for name, priority in [("low", 1), ("high", 3), ("normal", 2), ("highest", 4), ("lowest", 0)]:
        push(queue, name, priority)
    assert pop_all(queue) == ["highest", "high", "normal", "low", "lowest"]


def test_priority_enum_and_equal_ints_share_a_level() -> None:
    queue = JobQueue()
    push(queue, "a", Priority.HIGH)
    push(queue, "b", 3)
    push(queue, "c", Priority.HIGH)
    push(queue, "d", Priority.LOW)
    assert pop_all(queue) == ["a", "b", "c", "d"]


def test_any_int_including_negative_and_huge() -> None:
    queue = JobQueue()
    for name, priority in [
        ("minus-ten", -10),
        ("huge", 10**30),
        ("zero", 0),
        ("minus-one", -1),
        ("tiny", -(10**30)),
        ("five", 5),
    ]:
        push(queue, name, priority)
    assert pop_all(queue) == ["huge", "five", "zero", "minus-one", "minus-ten", "tiny"]


def test_push_front_goes_ahead_of_its_level_only() -> None:
    queue = JobQueue()
    push(queue, "a", 1)
    push(queue, "b", 1)
    push(queue, "top", 5)
    queue.push_front(job("retry", 1))
    assert pop_all(queue) == ["top", "retry", "a", "b"]


def test_tombstones_are_skipped_and_not_counted() -> None:
    queue = JobQueue()
    a, b, c = push(queue, "a", 1), push(queue, "b", 1), push(queue, "c", 2)
    cancel(queue, b)
    cancel(queue, c)
    assert queue.pending == len(queue) == 1
    assert pop_all(queue) == ["a"]
    assert queue.pending == 0
    del a


def test_tombstones_are_swept_when_they_outnumber_live_jobs() -> None:
    queue = JobQueue()
    live = [push(queue, f"live{i}", i % 3) for i in range(10)]
    dead = [push(queue, i, i % 7) for i in range(3000)]
    for item in dead:
        cancel(queue, item)
    # The sweep ran (more than 1024 tombstones, more than the live jobs): what is left in
    # the levels is the live jobs only, in order.
    stored = sum(len(level) for level in queue._levels.values())
    assert stored < 1100
    assert queue.pending == 10
    assert pop_all(queue) == [n for p in (2, 1, 0) for n in names(live) if int(str(n)[4:]) % 3 == p]


def test_drain_returns_live_jobs_in_pop_order_and_empties() -> None:
    queue = JobQueue()
    items = [
        push(queue, name, p) for name, p in [("a", 1), ("b", 3), ("c", 1), ("d", 3), ("e", -1)]
    ]
    cancel(queue, items[2])
    assert names(queue.drain()) == ["b", "d", "a", "e"]
    assert queue.pending == 0
    assert queue.pop() is None
    push(queue, "f", 0)  # usable after a drain
    assert pop_all(queue) == ["f"]


def test_many_distinct_priorities_cost_what_one_does() -> None:
    # Priorities from a deadline or a timestamp: every job its own level. Counted in levels
    # kept, not in time: no level survives being emptied, so the heap holds only live ones.
    queue = JobQueue()
    for i in range(50_000):
        push(queue, i, -i)
    assert len(queue._heap) == 50_000
    assert pop_all(queue) == list(range(50_000))
    assert queue._heap == []
    assert queue._levels == {}


@given(st.lists(st.tuples(st.integers(-(2**70), 2**70), st.booleans())))
def test_matches_a_stable_sort_model(pushes: list[tuple[int, bool]]) -> None:
    queue = JobQueue()
    items = [push(queue, index, priority) for index, (priority, _) in enumerate(pushes)]
    for item, (_, keep) in zip(items, pushes, strict=True):
        if not keep:
            cancel(queue, item)
    expected = sorted(
        (i for i in range(len(pushes)) if pushes[i][1]), key=lambda i: (-pushes[i][0], i)
    )
    assert queue.pending == len(expected)
    assert pop_all(queue) == expected


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("push"), st.integers(-5, 5)),
            st.tuples(st.just("front"), st.integers(-5, 5)),
            st.tuples(st.just("pop"), st.just(0)),
        )
    )
)
def test_interleaved_push_pop_matches_model(ops: list[tuple[str, int]]) -> None:
    queue = JobQueue()
    model: list[tuple[int, float, int]] = []  # (priority, order key, name)
    for sequence, (op, priority) in enumerate(ops):
        if op == "push":
            push(queue, sequence, priority)
            model.append((priority, sequence, sequence))
        elif op == "front":
            queue.push_front(job(sequence, priority))
            model.append((priority, -sequence - 0.5, sequence))  # ahead of its level
        else:
            got = queue.pop()
            if not model:
                assert got is None
            else:
                best = min(model, key=lambda entry: (-entry[0], entry[1]))
                model.remove(best)
                assert got is not None
                assert cast(FakeJob, got).name == best[2]
        assert queue.pending == len(model)
