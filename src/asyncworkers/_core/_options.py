"""Job options: what ``submit`` takes, checked once, into the object a job carries.

:func:`parse_options` is the one parser: :class:`Runtime` and :class:`SyncRuntime` both
call it (SyncRuntime in the submitting thread, so that bad input fails there), and nothing
parses twice. A job submitted without options shares one :class:`Options` per kind.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from inspect import CO_COROUTINE
from typing import TYPE_CHECKING, Any, Final, Protocol, TypedDict

from ._bridges import KINDS, check_picklable, default_kind
from ._cancel import CancellationToken
from ._retry import Retry
from ._units import Kind, Priority, WorkUnit

if TYPE_CHECKING:
    from ._units import Job
from ._validate import check_instance, check_seconds

__all__ = [
    "JobOptions",
    "Options",
    "OptionsMemo",
    "OtherOptions",
    "Owner",
    "parse_options",
    "parse_unit",
    "plain_options",
]

_NORMAL: Final = int(Priority.NORMAL)

_OPTION_NAMES: Final = frozenset(
    ("priority", "timeout", "retry", "token", "name", "callback", "metadata", "kind")
)


class OtherOptions(TypedDict, total=False):
    """The options of ``submit_nowait`` besides ``priority``, which is a parameter of its
    own there: a plain int priority then costs no dictionary entry on the fast path."""

    timeout: float | None
    retry: Retry | None
    token: CancellationToken | None
    name: str | None
    callback: Callable[[Any], object] | None
    metadata: Mapping[str, Any] | None
    kind: Kind | None


class JobOptions(OtherOptions, total=False):
    """Keyword options of ``submit``, ``submit_nowait``, ``run`` and ``map``."""

    priority: int


class Options:
    """The rarely set parts of a job, kept off the handle.

    Jobs submitted without options share one instance per kind, so a plain job pays for
    none of these fields.
    """

    __slots__ = (
        "callback",
        "direct",
        "guarded",
        "inline",
        "kind",
        "metadata",
        "name",
        "owner",
        "plain",
        "retry",
        "scoped",
        "timeout",
        "token",
    )

    def __init__(
        self,
        kind: Kind,
        owner: Owner,
        *,
        name: str | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        token: CancellationToken | None = None,
        callback: Callable[[Any], object] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.kind = kind
        # The runtime that runs the job: kept here rather than on every handle.
        self.owner = owner
        self.name = name
        self.timeout = timeout
        self.retry = retry
        self.token = token
        self.callback = callback
        self.metadata = metadata
        # Only process jobs pay for an anyio cancel scope: their bridge is anyio code, and
        # its cancellation stops the worker process.
        self.scoped = kind == "process"
        # Coroutine jobs are awaited straight from the worker's loop; a timeout or a token
        # is delivered there the way asyncio.timeout() does it (Task.cancel + uncancel).
        self.inline = kind == "async"
        # An inline job whose attempt arms a deadline timer or can be stopped by a token.
        self.guarded = self.inline and (timeout is not None or token is not None)
        # Inline with nothing to arm: the worker's hottest branch, tested with one read.
        self.direct = self.inline and not self.guarded
        # Nothing to do at the end but count: no token to unlink, no callback to call.
        self.plain = token is None and callback is None


class Owner(Protocol):
    """What options need of the runtime they belong to: its loop, its way to cancel a job,
    and the options it shares between the jobs submitted without any."""

    _loop: asyncio.AbstractEventLoop | None
    _plain_async: Options
    _plain_thread: Options

    def _cancel_job(self, job: Job[Any], reason: str | None) -> bool: ...


# The options a memo may share between jobs: immutable values (a float, a str, a frozen
# Retry) or ones that stand for themselves (a token). Not callback= (two equal bound methods
# may be of two objects), metadata= (a mapping the job hands back) or kind=.
_MEMO_KEYS: Final = frozenset(("timeout", "token", "name", "retry"))
_MISSING: Final = object()


class OptionsMemo:
    """The checked :class:`Options` of the last submit whose options were given, for the
    next submit that passes the very same objects (``timeout=5.0, token=tok`` in a loop).

    Matching by identity, never by equality, means nothing reaches a job unchecked: the
    same objects were checked once already. It holds one set of options (the last token
    among them) until the next miss or :meth:`clear`.
    """

    __slots__ = ("_items", "_opts")

    def __init__(self) -> None:
        self._items: tuple[tuple[str, object], ...] = ()
        self._opts: Options | None = None

    def lookup(self, options: Mapping[str, object], fn: Callable[..., Any]) -> Options | None:
        """The remembered options if *options* holds the same objects and *fn* is an
        ``async def`` function (the memo holds only options of that kind)."""
        items = self._items
        if len(options) != len(items):
            return None
        for key, value in items:
            if options.get(key, _MISSING) is not value:
                return None
        try:
            if not fn.__code__.co_flags & CO_COROUTINE:
                return None
        except AttributeError:
            return None
        return self._opts

    def remember(
        self, options: Mapping[str, object], fn: Callable[..., Any], opts: Options
    ) -> None:
        """Keep *opts* for the next submit with the same option objects, if it may be shared."""
        try:
            is_async_def = bool(fn.__code__.co_flags & CO_COROUTINE)
        except AttributeError:
            is_async_def = False
        if is_async_def and opts.kind == "async" and options.keys() <= _MEMO_KEYS:
            self._items = tuple(options.items())
            self._opts = opts

    def clear(self) -> None:
        self._items = ()
        self._opts = None


def plain_options(owner: Owner, fn: Callable[..., Any]) -> Options:
    """The shared options of a job submitted with none, by the kind of *fn*."""
    try:  # a function or bound method: its code object says at once if it is async
        if fn.__code__.co_flags & CO_COROUTINE:
            return owner._plain_async
    except AttributeError:
        pass
    if not callable(fn):
        raise TypeError(f"expected a callable to run, got {fn!r}")
    return owner._plain_async if default_kind(fn) == "async" else owner._plain_thread


def parse_options(
    owner: Owner,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any] | None,
    options: Mapping[str, Any],
    priority: object = _NORMAL,
) -> tuple[int, Options]:
    """Check the options of one submit: ``(priority, options)``, or an error that names the
    bad option and its value (TypeError for a wrong type, ValueError for a bad value).

    The priority is in *options*, or given apart (``submit_nowait`` takes it as a parameter
    of its own).
    """
    unknown = options.keys() - _OPTION_NAMES
    if unknown:
        raise TypeError(
            f"unknown option(s) {sorted(unknown)}; expected any of {sorted(_OPTION_NAMES)}"
        )
    priority = options.get("priority", priority)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be an int, got {priority!r}")
    if len(options) == 1 and "priority" in options:
        return priority, plain_options(owner, fn)
    if not callable(fn):
        raise TypeError(f"expected a callable to run, got {fn!r}")
    kind = _check_kind(fn, options.get("kind"))
    timeout = options.get("timeout")
    if timeout is not None:
        timeout = check_seconds("timeout", timeout, allow_zero=False)
        if timeout == math.inf:
            timeout = None  # no limit
    check_instance("retry", options.get("retry"), Retry)
    check_instance("token", options.get("token"), CancellationToken)
    check_instance("name", options.get("name"), str)
    check_instance("metadata", options.get("metadata"), Mapping)
    callback = options.get("callback")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {callback!r}")
    if kind == "process":
        check_picklable(fn, args, kwargs)
    opts = Options(
        kind,
        owner,
        name=options.get("name"),
        timeout=timeout,
        retry=options.get("retry"),
        token=options.get("token"),
        callback=callback,
        metadata=options.get("metadata"),
    )
    return priority, opts


def parse_unit(
    owner: Owner, unit: WorkUnit[Any]
) -> tuple[Callable[..., Any], tuple[Any, ...], Mapping[str, Any] | None, int, Options]:
    """A :class:`WorkUnit`'s ``(fn, args, kwargs or None, priority, options)``, checked."""
    if not isinstance(unit, WorkUnit):
        raise TypeError(f"enqueue() needs a WorkUnit, got {unit!r}")
    kwargs = dict(unit.kwargs) or None
    options: dict[str, Any] = {"priority": unit.priority}
    for key in ("timeout", "retry", "token", "name", "callback", "metadata", "kind"):
        value = getattr(unit, key)
        if value is not None:
            options[key] = value
    priority, opts = parse_options(owner, unit.fn, unit.args, kwargs, options)
    return unit.fn, unit.args, kwargs, priority, opts


def _check_kind(fn: Callable[..., Any], kind: object) -> Kind:
    if kind is None:
        return default_kind(fn)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if kind == "async" and default_kind(fn) != "async":
        raise TypeError(
            f'kind="async" needs a coroutine function, and {fn!r} is not one (plain '
            'functions run in threads: kind="thread", the default for them)'
        )
    return kind  # type: ignore[return-value]
