"""OpenTelemetry tracing (the ``asyncworkers[otel]`` extra): a span per store job, continued
from the trace of the code that enqueued it.

Costs nothing when opentelemetry is not installed or no tracer provider was set: the
Manager asks :func:`job_tracer` once, at its start, and without a tracer its jobs take the
plain path (no wrapper, no span, no lookup per job).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import asyncworkers as aw

if TYPE_CHECKING:
    from ..store import Claimed

__all__ = ["TRACE_KEY", "JobTracer", "inject_trace", "job_tracer"]

_SCOPE = "asyncworkers"

#: The reserved key, in a job's JSON arguments, that carries the producer's trace context
#: (W3C ``traceparent``/``tracestate``). The Manager takes it out before the task is called.
TRACE_KEY = "__aw_trace__"

_trace: Any = None  # the opentelemetry.trace module, once imported
_installed: bool | None = None  # is opentelemetry importable? (asked once: a failed import
# is not cached by Python, and would cost every enqueue)
_from_env = False  # a provider named by OTEL_PYTHON_TRACER_PROVIDER (read once)


def _provider_set() -> bool:
    """True when opentelemetry is importable and an application set a tracer provider.

    Asked at every enqueue, so it is made cheap: one global read when opentelemetry is
    missing or no provider is set (the API's ``get_tracer_provider()`` reads the
    environment each time, ~1 us)."""
    global _installed, _trace, _from_env
    if _installed is False:
        return False
    if _trace is None:
        try:
            from opentelemetry import trace
        except ImportError:
            _installed = False
            return False
        _installed, _trace = True, trace
        _from_env = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
    if getattr(_trace, "_TRACER_PROVIDER", None) is not None:
        return True  # set_tracer_provider() was called
    if not _from_env and hasattr(_trace, "_TRACER_PROVIDER"):
        return False
    # Until an application sets one, the API hands out a proxy whose tracers make
    # non-recording spans: tracing would cost without telling anybody anything.
    return not isinstance(_trace.get_tracer_provider(), _trace.ProxyTracerProvider)


def inject_trace() -> dict[str, str] | None:
    """The current trace context (W3C ``traceparent``, ``tracestate``), or None when
    tracing is off or no span is current. Enqueue keeps it with the job (``TRACE_KEY``)."""
    if not _provider_set():
        return None
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


class JobTracer:
    """Starts one span per job, child of the producer's context when the row carries one."""

    def __init__(self) -> None:
        from opentelemetry import trace

        self._trace = trace
        self._tracer = trace.get_tracer(_SCOPE)

    def start(self, claimed: Claimed, carried: object) -> Any:
        """The span of one claimed job (not current anywhere yet); end it with :meth:`end`.

        Its parent is the producer's span when *carried* holds a trace context."""
        from opentelemetry import propagate

        parent = None
        if isinstance(carried, dict):  # anything else in the reserved key is ignored
            parent = propagate.extract({str(k): str(v) for k, v in carried.items()})
        return self._tracer.start_span(
            f"asyncworkers job {claimed.task}",
            context=parent,
            kind=self._trace.SpanKind.CONSUMER,
            attributes={
                "asyncworkers.task": claimed.task,
                "asyncworkers.queue": claimed.queue,
                "asyncworkers.job_id": claimed.id,
                "asyncworkers.attempt": claimed.attempt,
            },
        )

    def current(self, span: Any) -> AbstractContextManager[Any]:
        """Make *span* the current one inside a block (the job's own code)."""
        return self._trace.use_span(span, end_on_exit=False)

    def end(self, span: Any, job: aw.Job[Any] | None) -> None:
        """End the span with the job's outcome (``not run`` when it never started)."""
        if job is None or not job.done():
            outcome, error = "not run", None
        else:
            outcome = _OUTCOMES[job.state]
            error = job.exception()
        span.set_attribute("asyncworkers.outcome", outcome)
        if error is not None:
            span.record_exception(error)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(error)[:200]))
        span.end()

    def wrap(self, call: Callable[..., Any], span: Any) -> Callable[..., Any]:
        """*call* with *span* current while it runs (a coroutine or a thread function; any
        other callable is left as it is, its span still timed around it)."""
        if inspect.iscoroutinefunction(call):

            async def traced_async(**kwargs: Any) -> Any:
                with self.current(span):
                    return await call(**kwargs)

            return traced_async
        if not (inspect.isfunction(call) or inspect.ismethod(call)):
            return call

        def traced(**kwargs: Any) -> Any:
            with self.current(span):
                return call(**kwargs)

        return traced


_OUTCOMES = {
    aw.JobState.COMPLETED: "succeeded",
    aw.JobState.FAILED: "failed",
    aw.JobState.CANCELLED: "cancelled",
}


def job_tracer() -> JobTracer | None:
    """A JobTracer when tracing is on (the extra installed and a provider set), else None."""
    return JobTracer() if _provider_set() else None
