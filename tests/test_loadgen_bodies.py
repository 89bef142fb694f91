"""``asyncworkers load`` never holds a response body (issue 17.4): bodies are streamed,
counted and dropped; a body over ``max_body`` is an error of its own kind; one that never
ends is a timeout; memory stays flat whatever the server sends."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from _loadgen_helpers import HANG_GUARD, cli_env, server
from asyncworkers.loadgen import LoadConfig, run
from asyncworkers.loadgen._config import DEFAULT_MAX_BODY, parse_size

__all__ = ["server"]  # the fixture, imported for pytest

HWM = Path(__file__).with_name("_load_hwm.py")
# Far above what streaming needs (~60 MB here), far below what holding bodies reached
# (540 MB in 3 s for 8 endless bodies; 1.7 GB in the run).
RSS_BOUND_KB = 200 * 1024


@pytest.mark.parametrize("open_model", [False, True], ids=["closed", "open"])
async def test_body_bytes_are_counted(server: str, open_model: bool) -> None:
    rate = 200.0 if open_model else None
    report = await run(LoadConfig(f"{server}/bytes/100000", concurrency=4, requests=20, rate=rate))
    assert (report.requests, report.ok) == (20, 20)
    assert report.recorder.body_bytes == 20 * 100_000
    data = report.to_json()
    assert data["body_bytes"] == 2_000_000
    assert data["body_bytes_per_s"] == pytest.approx(2_000_000 / report.duration, rel=0.01)


async def test_a_body_over_max_body_is_an_error_of_its_own_kind(server: str) -> None:
    exact = await run(LoadConfig(f"{server}/bytes/2000", concurrency=2, requests=6, max_body=2000))
    assert (exact.ok, exact.errors) == (6, 0)  # the cap itself is allowed
    over = await run(LoadConfig(f"{server}/bytes/2001", concurrency=2, requests=6, max_body=2000))
    assert over.requests == over.errors == 6
    assert over.recorder.errors_by_kind == Counter({"body_too_large": 6})
    assert over.to_json()["errors_by_kind"]["body_too_large"] == 6


async def test_an_endless_body_is_cut_at_max_body(server: str) -> None:
    report = await run(
        LoadConfig(f"{server}/endless", concurrency=4, requests=8, max_body=2**20, timeout=60)
    )
    assert report.recorder.errors_by_kind == Counter({"body_too_large": 8})
    # each read past the cap by at most what aiohttp's reader buffers, then dropped
    assert 8 * 2**20 < report.recorder.body_bytes < 8 * 2 * 2**20


async def test_a_body_that_never_ends_is_a_timeout(server: str) -> None:
    report = await run(LoadConfig(f"{server}/trickle", concurrency=3, requests=3, timeout=0.5))
    assert report.recorder.errors_by_kind == Counter({"timeout": 3})
    assert report.recorder.body_bytes > 0  # the bytes that came before it are counted


def test_memory_stays_flat_under_endless_bodies(server: str, tmp_path: Path) -> None:
    """8 endless chunked bodies for 3 s, no cap to speak of: the peak RSS of the load
    process stays far under 200 MB (it grew by ~180 MB a second when bodies were held)."""
    out, report = tmp_path / "hwm.json", tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, str(HWM), str(out), "load", f"{server}/endless", "-c", "8", "-n",
         "8", "--timeout", "3s", "--max-body", "1TiB", "-q", "--json", str(report)],
        capture_output=True, text=True, env=cli_env(), timeout=HANG_GUARD,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(report.read_text())
    assert data["errors_by_kind"]["timeout"] == 8
    assert data["body_bytes"] > 0
    peak = json.loads(out.read_text())
    assert peak["rc"] == 0
    assert peak["vmhwm_kb"] < RSS_BOUND_KB, peak


def test_max_body_option(tmp_path: Path) -> None:
    assert parse_size("64KiB") == 65536
    assert parse_size("10MB") == 10_000_000
    assert DEFAULT_MAX_BODY == 64 * 2**20
    for bad in ("0", "-1", "ten", "1kx"):
        with pytest.raises(ValueError, match="size"):
            parse_size(bad)
    with pytest.raises(ValueError, match="max_body"):
        LoadConfig("http://127.0.0.1:1/", max_body=0)
    with pytest.raises(TypeError, match="max_body"):
        LoadConfig("http://127.0.0.1:1/", max_body=1.5)  # type: ignore[arg-type]
    done = subprocess.run(
        [sys.executable, "-m", "asyncworkers", "load", "http://127.0.0.1:1/", "--max-body",
         "lots"],
        capture_output=True, text=True, env=cli_env(), timeout=HANG_GUARD,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "asyncworkers load: error: argument --max-body: expected a size such as 65536, "
        "64KiB, 10MB or 1GiB, got 'lots'"
    ]
