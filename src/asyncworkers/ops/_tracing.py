"""OpenTelemetry tracing (the ``asyncworkers[otel]`` extra): a span per store job, continued
from the trace of the code that enqueued it.

Costs nothing when opentelemetry is not installed or no tracer provider was set: the
Manager asks :func:`job_tracer` once, at its start, and without a tracer its jobs take the
plain path (no wrapper, no span, no lookup per job).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

__all__ = ["JobTracer", "inject_trace", "job_tracer"]

_SCOPE = "asyncworkers"


def _provider_set() -> bool:
    """True when opentelemetry is importable and an application set a tracer provider."""
    try:
        from opentelemetry import trace
    except ImportError:
        return False
    # Until an application calls set_tracer_provider, the API hands out a proxy whose
    # tracers make non-recording spans: tracing would cost without telling anybody anything.
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def inject_trace() -> str | None:
    """The current trace context as text (W3C ``traceparent``/``tracestate`` in JSON), or
    None when there is nothing to carry. The store keeps it with the job at enqueue."""
    if not _provider_set():
        return None
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return json.dumps(carrier, sort_keys=True) if carrier else None


class JobTracer:
    """Starts one span per job, child of the producer's context when the row carries one."""

    def __init__(self) -> None:
        from opentelemetry import trace

        self._trace = trace
        self._tracer = trace.get_tracer(_SCOPE)

    def start(self, name: str, attributes: Mapping[str, Any], carried: str | None) -> Any:
        """A started span (not current anywhere yet); end it with :meth:`end`."""
        from opentelemetry import propagate

        parent = None
        if carried:
            try:
                carrier = json.loads(carried)
            except ValueError:
                carrier = None
            if isinstance(carrier, dict):
                parent = propagate.extract({str(k): str(v) for k, v in carrier.items()})
        return self._tracer.start_span(
            name, context=parent, kind=self._trace.SpanKind.CONSUMER, attributes=dict(attributes)
        )

    def current(self, span: Any) -> AbstractContextManager[Any]:
        """Make *span* the current one inside a block (the job's own code)."""
        return self._trace.use_span(span, end_on_exit=False)

    def end(self, span: Any, outcome: str, error: BaseException | None) -> None:
        span.set_attribute("asyncworkers.outcome", outcome)
        if error is not None:
            span.record_exception(error)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(error)[:200]))
        span.end()

    def wrap(self, call: Callable[..., Any], span: Any, is_async: bool) -> Callable[..., Any]:
        """*call* with *span* current while it runs (an async or a thread job)."""
        if is_async:

            async def traced_async(**kwargs: Any) -> Any:
                with self.current(span):
                    return await call(**kwargs)

            return traced_async

        def traced(**kwargs: Any) -> Any:
            with self.current(span):
                return call(**kwargs)

        return traced


def job_tracer() -> JobTracer | None:
    """A JobTracer when tracing is on (the extra installed and a provider set), else None."""
    return JobTracer() if _provider_set() else None
