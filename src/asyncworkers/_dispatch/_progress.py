"""The live progress line of ``dispatch(progress=True)``, drawn by rich on stderr."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["ProgressLine"]


class ProgressLine:
    """A progress bar with ok and failed counts; does nothing when not enabled."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self._ok = self._failed = 0
        self._bar: Progress | None = None
        if enabled:
            # Imported here: rich costs more to import than asyncworkers itself, and only
            # dispatch(progress=True) draws with it.
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("dispatch"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("ok {task.fields[ok]} failed {task.fields[failed]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._task = self._bar.add_task("dispatch", total=total, ok=0, failed=0)

    def advance(self, ok: bool) -> None:
        if self._bar is None:
            return
        if ok:
            self._ok += 1
        else:
            self._failed += 1
        self._bar.update(self._task, advance=1, ok=self._ok, failed=self._failed)

    def __enter__(self) -> ProgressLine:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
