"""asyncworkers.loadgen through its Python API, against a real aiohttp server in a
subprocess (tests/_loadgen_server.py). Every async test runs on asyncio and on uvloop.

Nothing here depends on speed: counts are exact, latency claims compare the run with itself
(corrected against uncorrected, a 1 s stall against the rest), and waits are bounded only
by a hang guard.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections import Counter

import aiohttp
import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import asyncworkers as aw
from _loadgen_helpers import HANG_GUARD, refused_url, server
from asyncworkers import loadgen
from asyncworkers.loadgen import LoadConfig, Stage
from asyncworkers.loadgen._recorder import (
    HIGHEST_US,
    LOWEST_US,
    Recorder,
    count_index,
    new_histogram,
    settle,
    write,
)
from asyncworkers.loadgen._schedule import arrivals, stage_offsets

__all__ = ["refused_url", "server"]  # fixtures, imported for pytest


async def served(base: str, key: str) -> int:
    """How many requests the test server saw for *key*."""
    async with aiohttp.ClientSession() as session, session.get(f"{base}/count/{key}") as r:
        return int(await r.text())


async def run(config: LoadConfig, **kwargs: object) -> loadgen.LoadReport:
    with anyio.fail_after(HANG_GUARD):
        return await loadgen.run(config, **kwargs)  # type: ignore[arg-type]


async def test_closed_model_sends_every_request_once(server: str) -> None:
    key = uuid.uuid4().hex
    report = await run(LoadConfig(f"{server}/fast?key={key}", concurrency=4, requests=150))
    assert (report.requests, report.ok, report.errors) == (150, 150, 0)
    assert (report.recorder.sent, report.recorder.unfinished) == (150, 0)
    assert report.recorder.status_codes == Counter({200: 150})
    assert await served(server, key) == 150
    assert not report.open_model
    assert not report.interrupted
    assert report.recorder.corrected.get_total_count() == 150
    assert report.recorder.uncorrected.get_total_count() == 0  # closed: one figure
    assert sum(s["requests"] for s in report.timeline()) == 150
    latency = report.latency_ms()
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]


async def test_open_model_paces_and_keeps_both_latencies(server: str) -> None:
    key = uuid.uuid4().hex
    config = LoadConfig(f"{server}/fast?key={key}", concurrency=20, rate=400, requests=200)
    report = await run(config)
    assert (report.requests, report.ok) == (200, 200)
    assert await served(server, key) == 200
    assert report.target_rate == 400
    assert (report.recorder.sent, report.recorder.unfinished) == (200, 0)
    assert report.recorder.achieved_rate > 0
    rec = report.recorder
    assert rec.corrected.get_total_count() == rec.uncorrected.get_total_count() == 200
    # Latency from the intended send time is never shorter than from the actual one.
    corrected, uncorrected = report.latency_ms(), report.latency_uncorrected_ms()
    for key_ in ("p50", "p90", "p99", "max", "mean"):
        assert corrected[key_] >= uncorrected[key_]


async def test_stages_send_what_the_ramp_integrates_to(server: str) -> None:
    key = uuid.uuid4().hex
    stages = (Stage(0.4, 200), Stage(0.4, 300))  # 0->200 then 200->300 req/s: 40 + 100
    report = await run(LoadConfig(f"{server}/fast?key={key}", concurrency=20, stages=stages))
    assert report.requests == report.ok == 140 == await served(server, key)
    assert report.target_rate == pytest.approx(140 / 0.8)


async def test_coordinated_omission_shows_in_the_corrected_p99_only(server: str) -> None:
    # One connection, 300 requests meant for the first second; the first one stalls 1 s.
    # The requests queued behind it leave late: from their intended send times they waited
    # up to the whole second (the corrected p99 shows it); from their actual sends they
    # were quick, and the one slow request is under 1% (the uncorrected p99 does not).
    url = f"{server}/stall-once/{uuid.uuid4().hex}?s=1"
    report = await run(LoadConfig(url, concurrency=1, rate=300, requests=300))
    assert report.requests == report.ok == 300
    corrected, uncorrected = report.latency_ms(), report.latency_uncorrected_ms()
    assert corrected["p99"] >= 900
    assert uncorrected["max"] >= 1000  # the stall itself is there...
    assert uncorrected["p99"] < 1000  # ...but one request in 300 is not the p99
    assert report.recorder.late_sends > 0


@pytest.mark.parametrize(
    ("path", "kind", "status"),
    [
        ("/status/503", "http_5xx", 503),
        ("/status/404", "http_4xx", 404),
        ("/stall", "timeout", None),
    ],
)
async def test_errors_are_counted_by_kind(
    server: str, path: str, kind: str, status: int | None
) -> None:
    report = await run(LoadConfig(f"{server}{path}", concurrency=4, requests=12, timeout=0.2))
    assert report.requests == report.errors == 12
    assert report.ok == 0
    assert report.recorder.errors_by_kind == Counter({kind: 12})
    assert report.recorder.status_codes == (Counter({status: 12}) if status else Counter())
    assert sum(s["errors"] for s in report.timeline()) == 12


async def test_refused_connections_are_counted_and_the_run_ends(refused_url: str) -> None:
    report = await run(LoadConfig(refused_url, concurrency=4, rate=200, duration=0.5))
    assert report.requests == 100 == report.recorder.errors_by_kind["connect"]
    assert report.ok == 0
    assert not report.interrupted
    assert report.to_json()["errors_by_kind"]["connect"] == 100


async def test_cancelling_the_token_gives_the_partial_report(server: str) -> None:
    token = aw.CancellationToken()

    def stop_once_running(progress: loadgen.Progress) -> None:
        if progress.requests:
            token.cancel("enough")

    config = LoadConfig(f"{server}/fast", concurrency=2, duration=600)
    report = await run(config, token=token, on_progress=stop_once_running)
    assert report.interrupted
    assert report.to_json()["interrupted"] is True
    assert report.requests > 0
    assert report.duration < 600


async def test_stopping_counts_the_requests_dropped_in_flight(server: str) -> None:
    token = aw.CancellationToken()
    config = LoadConfig(f"{server}/stall", concurrency=50, rate=20, duration=600, timeout=300)
    # /stall never answers: once progress is reported, requests are in flight, none done.
    report = await run(config, token=token, on_progress=lambda progress: token.cancel())
    assert report.interrupted
    assert report.requests == 0
    assert report.recorder.unfinished == report.recorder.sent > 0
    assert report.to_json()["unfinished"] == report.recorder.sent


async def test_knee_search_reports_no_knee_when_every_rate_misses(server: str) -> None:
    # /slow answers after 100 ms: no rate has a p99 under 50 ms, however fast the machine.
    config = LoadConfig(f"{server}/slow?ms=100", concurrency=8, rate=40, duration=0.2)
    with anyio.fail_after(HANG_GUARD):
        report = await loadgen.find_knee(config, 0.05)
    assert report.knee is None
    assert report.steps
    assert not any(step["passed"] for step in report.steps)
    assert [step["rate"] for step in report.steps][:2] == [40, 20]  # bisecting down from 40
    data = report.to_json()
    assert data["knee"] is None
    assert data["knee_steps"] == report.steps


# -- pieces, without a server -----------------------------------------------------------------


@given(
    st.lists(
        st.tuples(st.floats(0.01, 5), st.floats(0, 500)).map(lambda t: Stage(*t)),
        min_size=1,
        max_size=4,
    )
)
def test_stage_offsets_follow_the_ramp(stages: list[Stage]) -> None:
    offsets = list(stage_offsets(stages))
    total = sum(s.duration for s in stages)
    # Request i is due when the arrivals so far reach i: ceil(arrivals) of them, give or
    # take the float rounding of a whole number of arrivals.
    assert abs(len(offsets) - math.ceil(arrivals(stages))) <= 1
    assert offsets == sorted(offsets)
    assert all(0 <= t <= total + 1e-9 for t in offsets)


def test_stage_offsets_of_a_constant_rate_are_evenly_spaced() -> None:
    offsets = list(stage_offsets([Stage(1, 0), Stage(0.5, 100), Stage(1, 100)]))
    # 0 -> 100 over 0.5 s holds 25 arrivals, then 100 more at 100/s.
    assert len(offsets) == 125
    steady = offsets[25:]
    assert steady[0] == pytest.approx(1.5)
    assert all(b - a == pytest.approx(0.01) for a, b in itertools.pairwise(steady))


@settings(deadline=None, max_examples=50)
@given(st.lists(st.lists(st.integers(1, 10**8), max_size=50), min_size=1, max_size=4))
def test_recorders_merge_exactly(latencies_us: list[list[int]]) -> None:
    parts, whole = [], Recorder(started_at=1000.0, open_model=True)
    for latencies in latencies_us:
        part = Recorder(started_at=1000.0, open_model=True)
        for i, us in enumerate(latencies):
            for rec in (part, whole):
                status: int | str = 200 if i % 3 else "connect"
                rec.record(status, 1000.0 + i * 1e-3, 1000.0 + i * 1e-3 + us / 1e6, 1000.0)
        part.finish(1100.0, 10.0)
        parts.append(Recorder.load(part.dump()))  # across a process boundary: plain data
    whole.finish(1100.0, 10.0)
    merged = Recorder.merge(parts)
    assert (merged.requests, merged.ok, merged.late_sends) == (
        whole.requests,
        whole.ok,
        whole.late_sends,
    )
    assert merged.errors_by_kind == whole.errors_by_kind
    assert merged.status_codes == whole.status_codes
    for name in ("corrected", "uncorrected"):
        a, b = getattr(merged, name), getattr(whole, name)
        assert a.get_total_count() == b.get_total_count()
        for percentile in (50, 90, 99, 99.9, 100):
            assert a.get_value_at_percentile(percentile) == b.get_value_at_percentile(percentile)
    assert [s.requests for s in merged.timeline] == [s.requests for s in whole.timeline]


@given(st.lists(st.integers(LOWEST_US, HIGHEST_US), min_size=1, max_size=200))
def test_write_and_settle_are_record_value(values: list[int]) -> None:
    ours, raw, theirs = new_histogram(), new_histogram(), new_histogram()
    for value in values:
        write(ours, value)
        raw.counts[count_index(value)] += 1  # what Recorder.record does
        theirs.record_value(value)
    settle(raw)
    for histogram in (ours, raw):
        assert list(histogram.counts) == list(theirs.counts)
        assert (histogram.total_count, histogram.get_min_value(), histogram.get_max_value()) == (
            theirs.total_count,
            theirs.get_min_value(),
            theirs.get_max_value(),
        )
        assert histogram.encode() == theirs.encode()
        for percentile in (0, 50, 99, 100):
            assert histogram.get_value_at_percentile(percentile) == theirs.get_value_at_percentile(
                percentile
            )


def test_settle_of_an_empty_histogram() -> None:
    histogram = settle(new_histogram())
    assert histogram.total_count == 0 == histogram.get_max_value()


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"url": "not a url"}, ValueError, "http"),
        ({"url": "http://127.0.0.1/", "concurrency": 0}, ValueError, "concurrency"),
        ({"url": "http://127.0.0.1/", "rate": -1.0}, ValueError, "rate"),
        ({"url": "http://127.0.0.1/", "concurrency": "8"}, TypeError, "concurrency"),
        ({"url": "http://127.0.0.1/", "rate": 5, "stages": (Stage(1, 5),)}, ValueError, "both"),
        ({"url": "http://127.0.0.1/", "processes": 3, "concurrency": 2}, ValueError, "processes"),
        ({"url": "http://127.0.0.1/", "method": "FETCH"}, ValueError, "method"),
        ({"url": "http://127.0.0.1/", "body": "text"}, TypeError, "body"),
    ],
)
def test_bad_configs_fail_at_construction(
    kwargs: dict[str, object], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        LoadConfig(**kwargs)  # type: ignore[arg-type]
