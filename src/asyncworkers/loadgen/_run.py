"""Running a load: ``dispatch()`` with one aiohttp session per process as the task.

In one process, :func:`run_here` opens the session and hands ``dispatch()`` its tasks with
``workers=concurrency`` and ``record=False`` (no per-request log: the recorder's histograms
are the log). Open model: one task per request, paced with ``rate`` or ``start_times``, and
``on_done`` records each from its log. Closed model: one task per connection, a user that
sends back to back and records each request itself (see ``_client.make_user`` for why).

A token stops the run: its scope cancels the dispatch (in-flight requests are dropped, not
counted) and what was recorded so far is the partial report.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio

import asyncworkers as aw

from ._client import Budget, ensure_open_files, make_request, make_user, open_session
from ._config import LoadConfig
from ._recorder import Recorder, percentile_ms
from ._schedule import arrivals, stage_offsets

__all__ = ["PROGRESS_EVERY", "Progress", "ProgressCallback", "run_here", "target_rate"]

# How often progress is reported, in seconds.
PROGRESS_EVERY = 0.5
# The open model with a rate and a duration: a count the duration always cuts first.
UNBOUNDED = 2**62


@dataclass(frozen=True)
class Progress:
    """A live view of a run: what it has done so far, and its last second."""

    elapsed: float
    requests: int
    errors: int
    rate: float  # requests/s over the last reporting interval
    p99_ms: float  # corrected p99 of the last full second (0 before there is one)


ProgressCallback = Callable[[Progress], object]


def target_rate(config: LoadConfig) -> float | None:
    """The requested arrival rate: ``rate``, or the stages' mean; None in the closed model."""
    if config.rate is not None:
        return config.rate
    if config.stages:
        return arrivals(config.stages) / sum(s.duration for s in config.stages)
    return None


def open_pacing(config: LoadConfig) -> dict[str, Any]:
    """``dispatch()``'s tasks and pacing arguments for an open-model *config*."""
    seconds = config.run_seconds
    if config.stages:
        count = math.ceil(arrivals(config.stages))
        if config.requests is not None:
            count = min(count, config.requests)
        offsets: Iterator[float] = itertools.islice(stage_offsets(config.stages), count)
        return {"tasks": count, "start_times": offsets}
    assert config.rate is not None
    count = config.requests if config.requests is not None else UNBOUNDED
    if seconds is not None:
        # Every request the schedule holds is sent, late ones too: cutting the tail of a
        # run that fell behind would hide that it did.
        count = min(count, math.ceil(config.rate * seconds))
    return {"tasks": count, "rate": config.rate}


async def run_here(
    config: LoadConfig,
    *,
    token: aw.CancellationToken | None = None,
    on_progress: ProgressCallback | None = None,
) -> Recorder:
    """Run *config* in this process (ignoring ``processes``); returns what it recorded,
    partial when *token* was cancelled first."""
    ensure_open_files(config.concurrency)
    token = token or aw.CancellationToken()
    recorder = Recorder(started_at=time.time(), open_model=config.open_model)
    async with open_session(config) as session, anyio.create_task_group() as tg:
        if on_progress is not None:
            tg.start_soon(_report_progress, recorder, on_progress)
        with token.scope():
            if config.open_model:
                await _dispatch_requests(session, config, recorder)
            else:
                await _dispatch_users(session, config, recorder)
        recorder.finish(time.time(), target_rate(config))
        tg.cancel_scope.cancel()
    return recorder


async def _dispatch_requests(
    session: aiohttp.ClientSession, config: LoadConfig, recorder: Recorder
) -> None:
    """Open model: one task per request, at its intended time; ``on_done`` records it
    with the log's times (``intended_at`` is what the correction needs)."""
    record = recorder.record

    def on_done(task_id: int, cfg: Any, result: Any, log: aw.TaskLog) -> None:
        record(result, log.started_at, log.ended_at, log.intended_at)  # type: ignore[arg-type]

    await aw.dispatch(
        make_request(session, config, recorder),
        workers=config.concurrency,
        on_done=on_done,
        record=False,
        **open_pacing(config),
    )


async def _dispatch_users(
    session: aiohttp.ClientSession, config: LoadConfig, recorder: Recorder
) -> None:
    """Closed model: one task per connection, each a user sending back to back until the
    shared budget (request count, deadline) is spent."""
    budget = Budget(config.requests, config.run_seconds)
    user = make_user(session, config, budget, recorder)
    try:
        await aw.dispatch(user, config.concurrency, workers=config.concurrency, record=False)
    finally:  # cancelled too: the partial report says how many never finished
        recorder.sent = budget.sent


async def _report_progress(recorder: Recorder, on_progress: ProgressCallback) -> None:
    last_requests, last_at = 0, time.time()
    while True:
        await asyncio.sleep(PROGRESS_EVERY)
        on_progress(progress_of(recorder, last_requests, last_at))
        last_requests, last_at = recorder.requests, time.time()


def progress_of(recorder: Recorder, last_requests: int, last_at: float) -> Progress:
    """The recorder's progress since a previous look at *last_at*."""
    now = time.time()
    full = recorder.timeline[-2:-1]  # the last full second, if any
    return Progress(
        elapsed=now - recorder.started_at,
        requests=recorder.requests,
        errors=recorder.errors,
        rate=(recorder.requests - last_requests) / max(now - last_at, 1e-9),
        p99_ms=percentile_ms(full[0].histogram(), 99) if full else 0.0,
    )
