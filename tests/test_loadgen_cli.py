"""``asyncworkers load`` as users run it, against the test server in a subprocess.

Runs are short and counted by requests (-n), so that nothing depends on speed. Bad input is
checked in-process (argparse and the handler are the whole path), and once in a subprocess
for the exact stderr: one line, no traceback, exit status 2.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from _loadgen_helpers import HANG_GUARD, cli_env, refused_url, server
from asyncworkers.cli import main
from asyncworkers.loadgen._plot import can_plot

__all__ = ["refused_url", "server"]  # fixtures, imported for pytest

REPORT_KEYS = {
    "requests",
    "ok",
    "errors",
    "errors_by_kind",
    "status_codes",
    "throughput",
    "latency_ms",
    "timeline",
}
OPEN_KEYS = {"target_rate", "achieved_rate", "latency_uncorrected_ms", "late_sends"}
LATENCY_KEYS = {"p50", "p90", "p99", "p99_9", "max", "mean"}
ERROR_KINDS = {"connect", "timeout", "body_too_large", "http_4xx", "http_5xx", "other"}


def load(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m asyncworkers load *args`` with piped output."""
    return subprocess.run(
        [sys.executable, "-m", "asyncworkers", "load", *args],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        stdin=subprocess.DEVNULL,
        env=cli_env(),
        check=False,
    )


def served(base: str, key: str) -> int:
    with urllib.request.urlopen(f"{base}/count/{key}", timeout=HANG_GUARD) as response:
        return int(response.read())


def test_closed_model_report_has_the_keys(server: str, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    key = uuid.uuid4().hex
    proc = load(f"{server}/fast?key={key}", "-n", "120", "-c", "4", "-q", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data.keys() >= REPORT_KEYS
    assert not OPEN_KEYS & data.keys()
    assert (
        (data["requests"], data["ok"], data["errors"])
        == (120, 120, 0)
        == (
            served(server, key),
            120,
            0,
        )
    )
    assert set(data["errors_by_kind"]) == ERROR_KINDS
    assert data["status_codes"] == {"200": 120}
    assert set(data["throughput"]) == {"mean", "peak", "peak_window"}
    assert set(data["latency_ms"]) == LATENCY_KEYS
    assert sum(entry["requests"] for entry in data["timeline"]) == 120
    for entry in data["timeline"]:
        assert {"second", "requests", "errors", "latency_ms"} <= entry.keys()
        assert set(entry["latency_ms"]) == {"p50", "p99"}
    assert "requests" in proc.stdout
    assert "p99" in proc.stdout


def test_open_model_report_has_the_open_keys(server: str, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = load(f"{server}/fast", "-r", "300", "-n", "150", "-q", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data.keys() >= REPORT_KEYS | OPEN_KEYS
    assert data["requests"] == 150
    assert data["target_rate"] == 300
    assert set(data["latency_uncorrected_ms"]) == LATENCY_KEYS
    assert data["latency_ms"]["p99"] >= data["latency_uncorrected_ms"]["p99"]
    assert "Open model" in proc.stdout


def test_two_processes_merge_into_one_report(server: str, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    key = uuid.uuid4().hex
    url = f"{server}/fast?key={key}"
    proc = load(url, "-n", "201", "-c", "4", "--processes", "2", "-q", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["processes"] == 2
    assert data["requests"] == data["ok"] == 201 == served(server, key)
    assert sum(entry["requests"] for entry in data["timeline"]) == 201


def test_refused_target_is_counted_and_ends(refused_url: str, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = load(refused_url, "-n", "40", "-c", "4", "-q", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["requests"] == data["errors"] == data["errors_by_kind"]["connect"] == 40
    assert "Errors by kind" in proc.stdout


@pytest.mark.parametrize("processes", ["1", "2"])
def test_ctrl_c_prints_and_writes_the_partial_report(
    server: str, tmp_path: Path, processes: str
) -> None:
    out = tmp_path / "report.json"
    key = uuid.uuid4().hex
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asyncworkers",
            "load",
            f"{server}/fast?key={key}",
            "-d",
            "600",
            "-c",
            "2",
            "--processes",
            processes,
            "--json",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=cli_env(),
    )
    try:
        deadline = time.monotonic() + HANG_GUARD
        while served(server, key) == 0:  # wait until the run is sending
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the load never reached the server"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=HANG_GUARD)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stdout
    assert "requests" in stdout
    data = json.loads(out.read_text())
    assert data["processes"] == int(processes)
    assert data["interrupted"] is True
    assert data["requests"] > 0


def test_plot_writes_a_png_or_names_the_missing_extra(server: str, tmp_path: Path) -> None:
    png = tmp_path / "load.png"
    proc = load(f"{server}/fast", "-n", "50", "-q", "--plot", str(png))
    if can_plot():
        assert proc.returncode == 0, proc.stderr
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert proc.returncode == 2
        assert "--plot" in proc.stderr
        assert "matplotlib" in proc.stderr


# -- bad input ---------------------------------------------------------------------------------

URL = "http://127.0.0.1:9/"

BAD = [
    (["not-a-url"], "URL", "not-a-url"),
    (["ftp://127.0.0.1/"], "URL", "ftp://127.0.0.1/"),
    (["http://127.0.0.1:99999/"], "URL", "99999"),
    ([URL, "-r", "0"], "--rate", "0"),
    ([URL, "-r", "-5"], "--rate", "-5"),
    ([URL, "-r", "fast"], "--rate", "fast"),
    ([URL, "-c", "0"], "--concurrency", "0"),
    ([URL, "-c", "-2"], "--concurrency", "-2"),
    ([URL, "--body-file", "/nonexistent/body"], "--body-file", "/nonexistent/body"),
    ([URL, "--stages", "10s"], "--stages", "10s"),
    ([URL, "--stages", "10s:lots"], "--stages", "10s:lots"),
    ([URL, "--stages", "soon:100"], "--stages", "soon:100"),
    ([URL, "--stages", "10s:0"], "--stages", "10s:0"),
    ([URL, "--stages", "10s:100", "-r", "5"], "--stages", "--rate 5"),
    ([URL, "-d", "0"], "--duration", "0"),
    ([URL, "-d", "forever"], "--duration", "forever"),
    ([URL, "-n", "0"], "--requests", "0"),
    ([URL, "--timeout=-1s"], "--timeout", "-1s"),
    ([URL, "--processes", "many"], "--processes", "many"),
    ([URL, "--processes", "3", "-c", "2"], "--processes", "3"),
    ([URL, "--processes", "2", "-n", "1"], "--requests", "1"),
    ([URL, "-H", "no-colon"], "--header", "no-colon"),
    ([URL, "-m", "FETCH"], "--method", "FETCH"),
    ([URL, "--find-knee"], "--find-knee", "--p99"),
    ([URL, "--find-knee", "--p99", "fast"], "--p99", "fast"),
    ([URL, "-c", "100000000"], "--concurrency", "100000000"),
    # argparse reads "-3s" as an option: the message still says what a duration must be
    ([URL, "-d", "-3s"], "--duration", "durations must be positive"),
    ([URL, "--timeout", "-1s"], "--timeout", "durations must be positive"),
]


@pytest.mark.parametrize(("args", "option", "value"), BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_is_one_line_naming_option_and_value(
    args: list[str], option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        status = main(["load", *args])
    except SystemExit as exit_:
        status = exit_.code  # type: ignore[assignment]
    captured = capsys.readouterr()
    assert status == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert option in lines[0], lines[0]
    assert value in lines[0], lines[0]
    assert captured.out == ""


def test_bad_input_in_a_subprocess_is_one_line_and_status_2() -> None:
    proc = load(URL, "--rate", "-5")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
    assert "--rate" in proc.stderr
    assert "-5" in proc.stderr


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["load", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in ("--concurrency", "--rate", "--stages", "--duration", "--requests"):
        assert option in out
    for option in ("--method", "--header", "--body-file", "--timeout", "--processes"):
        assert option in out
    for option in ("--json", "--plot", "--quiet", "--find-knee", "--p99"):
        assert option in out
