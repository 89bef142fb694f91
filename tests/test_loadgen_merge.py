"""``asyncworkers load merge``: reports of load generators on several hosts, added exactly.

The merge of the JSON reports (``--json``, through a JSON round trip) reports what one run
over the union of the requests reports, percentile for percentile; and two generators in two
hosts (network namespaces, tests/_hosts.py) against a server in a third add up to the
server's own count of the requests it answered.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _hosts import Network
from _loadgen_helpers import HANG_GUARD, cli_env, serving
from asyncworkers import loadgen
from asyncworkers.cli import main
from asyncworkers.loadgen import LoadConfig, LoadReport
from asyncworkers.loadgen._recorder import Recorder

URL = "http://service.internal:8080/"


def report_of(recorder: Recorder, config: LoadConfig) -> dict[str, Any]:
    """What ``--json`` writes for *recorder*, through a JSON round trip."""
    report = LoadReport(config, recorder, config.rate)
    return json.loads(json.dumps(report.to_json()))  # type: ignore[no-any-return]


# few examples: each report's JSON costs ~0.2 s (hdrh's mean walks every bucket in Python);
# the Recorder-level merge is searched wider in tests/test_loadgen.py
@settings(deadline=None, max_examples=8)
@given(
    st.lists(
        # latencies from 1 us to 10 s, ending over 3 s: a few seconds of timeline
        st.lists(st.tuples(st.integers(1, 10**7), st.integers(0, 3000)), max_size=60),
        min_size=1,
        max_size=3,
    ),
    st.booleans(),
)
def test_merged_reports_equal_one_run_over_the_union(
    parts: list[list[tuple[int, int]]], open_model: bool
) -> None:
    rate = 10.0 if open_model else None
    config = LoadConfig(URL, concurrency=4, rate=rate)
    outcomes: list[int | str] = [200, 200, 503, "timeout", 404]
    whole = Recorder(started_at=1000.0, open_model=open_model)
    reports = []
    for requests in parts:
        part = Recorder(started_at=1000.0, open_model=open_model)
        for i, (micros, ended_ms) in enumerate(requests):
            ended = 1000.0 + ended_ms / 1000 + micros / 1e6
            started = ended - micros / 1e6
            intended = started - 0.01 * (i % 2) if open_model else None
            for rec in (part, whole):
                rec.record(outcomes[i % len(outcomes)], started, ended, intended)
        part.finish(1004.0, rate)
        reports.append(report_of(part, config))
    whole.finish(1004.0, rate)
    merged = loadgen.merge_reports(reports)
    one = LoadReport(config, whole, rate)
    ours, theirs = merged.to_json(), one.to_json()
    for key in ("requests", "ok", "errors", "errors_by_kind", "status_codes", "latency_ms"):
        assert ours[key] == theirs[key], key
    assert [s["requests"] for s in ours["timeline"]] == [s["requests"] for s in theirs["timeline"]]
    for name in ("corrected", "uncorrected"):
        a, b = getattr(merged.recorder, name), getattr(whole, name)
        assert a.get_total_count() == b.get_total_count()
        for percentile in (0, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100):
            assert a.get_value_at_percentile(percentile) == b.get_value_at_percentile(percentile)
    if open_model:
        assert ours["latency_uncorrected_ms"] == theirs["latency_uncorrected_ms"]
        assert ours["late_sends"] == theirs["late_sends"]
    # a merged report merges again (hosts, then sites)
    again = loadgen.merge_reports([ours])
    assert again.to_json()["latency_ms"] == theirs["latency_ms"]


def small_report(url: str = URL) -> dict[str, Any]:
    recorder = Recorder(started_at=1000.0, open_model=False)
    recorder.record(200, 1000.0, 1000.002, None)
    recorder.finish(1001.0, None)
    return report_of(recorder, LoadConfig(url))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda r: r.update(url="http://other:1/"), "b.json: url 'http://other:1/' differs"),
        (lambda r: r.update(model="open"), "b.json: model 'open' differs"),
        (lambda r: r.pop("recorder"), "b.json: has no histograms"),
        (lambda r: r.update(knee=None), "b.json: a --find-knee report"),
        (lambda r: r["recorder"].update(corrected="not base64!"), "b.json: its histograms"),
        (lambda r: r.pop("url"), "b.json: not a load report: no url"),
    ],
)
def test_reports_that_do_not_fit_are_named(change: Any, words: str) -> None:
    bad = small_report()
    change(bad)
    with pytest.raises(ValueError, match="^" + words.replace("(", r"\(")):
        loadgen.merge_reports([small_report(), bad], ["a.json", "b.json"])


def test_merge_command_writes_the_merged_report(tmp_path: Path) -> None:
    paths = []
    for name in ("a", "b", "c"):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(small_report()))
        paths.append(str(path))
    out = tmp_path / "all.json"
    assert main(["load", "merge", *paths, "--json", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert (merged["requests"], merged["ok"], merged["concurrency"]) == (3, 3, 30)
    assert merged["latency_ms"] == small_report()["latency_ms"]


def test_merge_command_bad_input_is_one_line(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(small_report()))
    bad.write_text("{not json")
    for args, words in (
        ([str(good), str(bad)], "is not JSON"),
        ([str(good), str(tmp_path / "missing.json")], "cannot read"),
        ([], "the following arguments are required: REPORT"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "asyncworkers", "load", "merge", *args],
            capture_output=True, text=True, timeout=HANG_GUARD, env=cli_env(), check=False,
        )  # fmt: skip
        assert done.returncode == 2
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("asyncworkers load merge: error: ")
        assert words in line


# -- two hosts load one server on a third ----------------------------------------------------


@contextmanager
def generators(hosts: Network, url: str, tmp_path: Path) -> Iterator[list[Path]]:
    """``asyncworkers load`` in hosts 0 and 1 at once; their JSON reports."""
    reports = [tmp_path / f"h{i}.json" for i in range(2)]
    procs = []
    for i, n in enumerate((300, 500)):
        argv = [sys.executable, "-m", "asyncworkers", "load", url, "-c", "4", "-n", str(n), "-q"]
        procs.append(
            hosts[i].popen(
                [*argv, "--json", str(reports[i])],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=cli_env(),
            )
        )
    for proc in procs:
        _, err = proc.communicate(timeout=HANG_GUARD)
        assert proc.returncode == 0, err
    yield reports


def test_two_hosts_load_a_server_on_a_third_and_the_merge_adds_up(
    hosts: Network, tmp_path: Path
) -> None:
    with serving(launcher=hosts[2].command([]), address=hosts[2].address) as base:
        url = f"{base}/fast?key=merge"
        with generators(hosts, url, tmp_path) as reports:
            out = tmp_path / "merged.json"
            assert main(["load", "merge", *map(str, reports), "--json", str(out)]) == 0
        with urllib.request.urlopen(f"{base}/count/merge", timeout=HANG_GUARD) as response:
            served = int(response.read())
    merged = json.loads(out.read_text())
    parts = [json.loads(p.read_text()) for p in reports]
    assert [p["requests"] for p in parts] == [300, 500]
    assert merged["requests"] == merged["ok"] == served == 800
    assert merged["status_codes"] == {"200": 800}
    assert merged["concurrency"] == 8
    assert merged["processes"] == 2
