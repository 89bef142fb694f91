"""A bucketed priority queue: one deque per priority level, FIFO inside a level.

A heap costs O(log n) per operation and ~2.7 us per pop at a depth of 200k; with a handful of
levels in use, finding the highest non-empty deque is a few truth tests. Entries are never
removed from the middle: a cancelled pending job stays as a tombstone that the consumer skips,
and :meth:`compact` sweeps tombstones out when they pile up.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["PriorityQueue"]

T = TypeVar("T")


class PriorityQueue(Generic[T]):
    """Highest priority first, first in first out within one priority."""

    __slots__ = ("_keys", "_levels", "_order")

    def __init__(self) -> None:
        self._levels: dict[int, deque[T]] = {}
        self._keys: list[int] = []  # ascending priorities, for bisect
        self._order: list[deque[T]] = []  # the same levels, highest priority first

    def push(self, item: T, priority: int) -> None:
        level = self._levels.get(priority)
        if level is None:
            level = self._add_level(priority)
        level.append(item)

    def pop(self) -> T | None:
        """The next item, or None when the queue is empty."""
        for level in self._order:
            if level:
                return level.popleft()
        return None

    def __len__(self) -> int:
        return sum(map(len, self._order))

    def __bool__(self) -> bool:
        return any(self._order)

    def __iter__(self) -> Iterator[T]:
        """Items in the order :meth:`pop` would give them."""
        for level in self._order:
            yield from level

    def drain(self) -> list[T]:
        """Remove and return every item, in pop order."""
        items = list(self)
        for level in self._order:
            level.clear()
        return items

    def compact(self, keep: Callable[[T], bool]) -> None:
        """Drop the items for which *keep* is false, and the levels left empty."""
        for priority, level in list(self._levels.items()):
            kept = [item for item in level if keep(item)]
            if kept:
                level.clear()
                level.extend(kept)
            else:
                del self._levels[priority]
        self._keys = sorted(self._levels)
        self._order = [self._levels[p] for p in reversed(self._keys)]

    def _add_level(self, priority: int) -> deque[T]:
        level: deque[T] = deque()
        self._levels[priority] = level
        index = bisect.bisect(self._keys, priority)
        self._keys.insert(index, priority)
        self._order.insert(len(self._keys) - 1 - index, level)
        return level
