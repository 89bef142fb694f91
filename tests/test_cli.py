"""The command line, run the way users run it: ``python -m asyncworkers`` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from _helpers import SUBPROCESS_GUARD
from asyncworkers.cli import build_parser, main


def run_cli(*args: str, timeout: float = SUBPROCESS_GUARD) -> subprocess.CompletedProcess[str]:
    """Run ``python -m asyncworkers *args`` with piped output (no TTY), as CI does."""
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "asyncworkers", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env,
        check=False,
    )


def test_help_lists_the_demo() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    assert "demo" in proc.stdout


def test_demo_help() -> None:
    proc = run_cli("demo", "--help")
    assert proc.returncode == 0, proc.stderr
    for option in ("--jobs", "--workers", "--seed"):
        assert option in proc.stdout


def test_no_command_is_a_usage_error() -> None:
    proc = run_cli()
    assert proc.returncode == 2
    assert "usage:" in proc.stderr


def test_demo_runs_and_reports() -> None:
    proc = run_cli("demo", "--jobs", "60", "--seed", "7")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    # The metrics tables.
    for heading in ("Counters", "submitted", "completed", "cancelled", "retried"):
        assert heading in out
    for heading in ("Latency (ms)", "p50", "p90", "p99", "max", "wait", "run"):
        assert heading in out
    # The notable jobs: cancelled ones, the retried one, the timed-out one.
    assert "Notable jobs" in out
    assert "CANCELLED" in out
    assert "JobCancelled" in out
    assert "retried" in out
    assert "timed out" in out
    assert "JobTimeout" in out
    # The dispatch part: its counts and TPS figures.
    for heading in ("Dispatch: 200 tasks at 400/s", "average TPS", "peak TPS over 0.2 s"):
        assert heading in out
    # the failed tasks are among the completed ones, and the line says so
    assert "200 (180 succeeded, 20 failed)" in out
    # The demo checks its own claims (priority order, cancellation, retry, timeout, process
    # results, metrics, dispatch) and prints one line per check; none may fail.
    lines = out.splitlines()
    assert not [line for line in lines if line.startswith("FAIL")]
    checks = [line for line in lines if line.startswith("ok ")]
    assert len([line for line in checks if "store:" not in line]) == 8, out
    assert len([line for line in checks if "store:" in line]) == 4, out  # the durable part
    assert any("priority: " in line for line in checks)


@pytest.mark.parametrize("bad", ["0", "-3", "many"])
def test_demo_rejects_bad_job_counts(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--jobs", bad])
    assert info.value.code == 2
    assert "--jobs" in capsys.readouterr().err


def test_parser_requires_a_command() -> None:
    args = build_parser().parse_args(["demo"])
    assert args.command == "demo"
    assert (args.jobs, args.workers, args.seed) == (120, 8, 1)
