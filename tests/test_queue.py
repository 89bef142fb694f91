"""The bucketed priority queue: higher first, FIFO inside a level, any int as a level."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from asyncworkers import Priority
from asyncworkers._core._queue import PriorityQueue


def pop_all(queue: PriorityQueue[str]) -> list[str]:
    items = []
    while (item := queue.pop()) is not None:
        items.append(item)
    return items


def test_empty_queue() -> None:
    queue: PriorityQueue[str] = PriorityQueue()
    assert queue.pop() is None
    assert len(queue) == 0
    assert not queue
    assert list(queue) == []
    assert queue.drain() == []


def test_fifo_within_one_level() -> None:
    queue: PriorityQueue[str] = PriorityQueue()
    for item in "abcde":
        queue.push(item, 2)
    assert pop_all(queue) == list("abcde")


def test_higher_priority_first() -> None:
    queue: PriorityQueue[str] = PriorityQueue()
    queue.push("low", 1)
    queue.push("high", 3)
    queue.push("normal", 2)
    queue.push("highest", 4)
    queue.push("lowest", 0)
    assert pop_all(queue) == ["highest", "high", "normal", "low", "lowest"]


def test_priority_enum_and_equal_ints_share_a_level() -> None:
    queue: PriorityQueue[str] = PriorityQueue()
    queue.push("a", Priority.HIGH)
    queue.push("b", 3)
    queue.push("c", Priority.HIGH)
    queue.push("d", Priority.LOW)
    assert pop_all(queue) == ["a", "b", "c", "d"]


def test_any_int_including_negative_and_huge() -> None:
    queue: PriorityQueue[str] = PriorityQueue()
    queue.push("minus-ten", -10)
    queue.push("huge", 10**30)
    queue.push("zero", 0)
    queue.push("minus-one", -1)
    queue.push("tiny", -(10**30))
    queue.push("five", 5)
    assert pop_all(queue) == ["huge", "five", "zero", "minus-one", "minus-ten", "tiny"]


def test_len_bool_and_iteration_follow_pop_order() -> None:
    queue: PriorityQueue[str] = PriorityQueue()
    queue.push("a", 1)
    queue.push("b", 5)
    queue.push("c", 1)
    queue.push("d", -3)
    assert len(queue) == 4
    assert queue
    assert list(queue) == ["b", "a", "c", "d"]
    assert len(queue) == 4  # iterating does not consume
    assert queue.pop() == "b"
    assert len(queue) == 3


def test_levels_emptied_by_pop_are_reused() -> None:
    queue: PriorityQueue[str] = PriorityQueue()
    queue.push("a", 1)
    queue.push("b", 2)
    assert pop_all(queue) == ["b", "a"]
    assert not queue
    queue.push("c", 1)
    queue.push("d", 2)
    queue.push("e", 3)
    assert pop_all(queue) == ["e", "d", "c"]


def test_drain_returns_everything_in_pop_order_and_empties() -> None:
    queue: PriorityQueue[str] = PriorityQueue()
    for item, priority in [("a", 1), ("b", 3), ("c", 1), ("d", 3), ("e", -1)]:
        queue.push(item, priority)
    assert queue.drain() == ["b", "d", "a", "c", "e"]
    assert len(queue) == 0
    assert not queue
    assert queue.pop() is None
    queue.push("f", 0)  # usable after a drain
    assert pop_all(queue) == ["f"]


def test_compact_drops_what_keep_rejects_and_keeps_order() -> None:
    queue: PriorityQueue[str] = PriorityQueue()
    for item, priority in [("a", 1), ("x1", 2), ("b", 1), ("x2", 1), ("c", 3), ("x3", 3)]:
        queue.push(item, priority)
    queue.compact(lambda item: not item.startswith("x"))
    assert len(queue) == 3
    assert list(queue) == ["c", "a", "b"]
    # the level that compact emptied (2) still works when used again
    queue.push("d", 2)
    queue.push("e", 2)
    assert pop_all(queue) == ["c", "d", "e", "a", "b"]


def test_compact_to_empty() -> None:
    queue: PriorityQueue[str] = PriorityQueue()
    queue.push("a", 1)
    queue.push("b", -1)
    queue.compact(lambda item: False)
    assert not queue
    assert queue.pop() is None
    queue.push("c", 7)
    queue.push("d", -7)
    assert pop_all(queue) == ["c", "d"]


@given(st.lists(st.tuples(st.integers(-(2**70), 2**70), st.booleans())))
def test_matches_a_stable_sort_model(pushes: list[tuple[int, bool]]) -> None:
    queue: PriorityQueue[int] = PriorityQueue()
    for index, (priority, _) in enumerate(pushes):
        queue.push(index, priority)
    assert len(queue) == len(pushes)
    expected = sorted(range(len(pushes)), key=lambda i: (-pushes[i][0], i))
    assert list(queue) == expected
    # compact keeps the flagged ones, in the same relative order
    queue.compact(lambda i: pushes[i][1])
    kept = [i for i in expected if pushes[i][1]]
    assert list(queue) == kept
    out = []
    while (item := queue.pop()) is not None:
        out.append(item)
    assert out == kept


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("push"), st.integers(-5, 5)),
            st.tuples(st.just("pop"), st.just(0)),
        )
    )
)
def test_interleaved_push_pop_matches_model(ops: list[tuple[str, int]]) -> None:
    queue: PriorityQueue[int] = PriorityQueue()
    model: list[tuple[int, int]] = []  # (priority, sequence)
    for sequence, (op, priority) in enumerate(ops):
        if op == "push":
            queue.push(sequence, priority)
            model.append((priority, sequence))
        else:
            got = queue.pop()
            if not model:
                assert got is None
            else:
                best = min(model, key=lambda entry: (-entry[0], entry[1]))
                model.remove(best)
                assert got == best[1]
        assert len(queue) == len(model)
        assert bool(queue) == bool(model)
