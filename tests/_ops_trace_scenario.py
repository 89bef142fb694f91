"""Tracing end to end, in a process of its own (an OpenTelemetry tracer provider can be set
only once per process, and must not leak into the other tests)::

    python tests/_ops_trace_scenario.py DB_PATH

A producer enqueues one job inside a span and one outside any; a Manager runs both; the
job's code opens a span of its own. Prints the finished spans and the stored arguments as
one JSON object.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import asyncworkers as aw

tasks = aw.store.TaskRegistry()
tracer = trace.get_tracer("tests")


@tasks.task("traced")
async def traced(n: int) -> int:
    with tracer.start_as_current_span("inside the job"):
        return n * 2


@tasks.task("traced_thread")
def traced_thread(n: int) -> int:
    with tracer.start_as_current_span("inside the thread job"):
        return n * 3


async def main(path: str) -> dict[str, Any]:
    async with aw.store.SQLiteStore(path) as store:
        with tracer.start_as_current_span("producer"):
            ids = [await tasks.enqueue(store, "traced", {"n": 2}),
                   await tasks.enqueue(store, "traced_thread", {"n": 3})]  # fmt: skip
        ids.append(await tasks.enqueue(store, "traced", {"n": 5}))  # no span: a new trace
        async with aw.store.Manager(store, tasks, concurrency=3, poll_interval=0.05) as m:
            results = [await store.result(i, timeout=60) for i in ids]
            m.stop()
        records = [await store.get(i) for i in ids]
    return {"results": results, "args": [r.args if r else None for r in records]}


if __name__ == "__main__":
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    out = aw.run(main, sys.argv[1])
    out["spans"] = [
        {
            "name": span.name,
            "trace": format(span.context.trace_id, "032x"),
            "id": format(span.context.span_id, "016x"),
            "parent": None if span.parent is None else format(span.parent.span_id, "016x"),
            "attributes": dict(span.attributes or {}),
        }
        for span in exporter.get_finished_spans()
    ]
    print(json.dumps(out))
