"""The programs in examples/ run to the end and report what they checked.

Each one runs as a subprocess with this interpreter, as a user would run it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from _helpers import SUBPROCESS_GUARD

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_GUARD,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "jobs", "priced"),
    [
        ((), 2000, 1000),  # the defaults: 4 managers x 500 units
        (("--managers", "8", "--units", "125", "--workers", "3"), 1000, 504),
        (("--managers", "2", "--units", "0"), 0, 0),
    ],
    ids=["defaults", "8-managers-3-workers", "no-units"],
)
def test_producer_threads(args: tuple[str, ...], jobs: int, priced: int) -> None:
    proc = run_example("producer_threads.py", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "nothing lost"
    assert re.match(rf"\d+ managers x \d+ units = {jobs} jobs on (uvloop|asyncio), ", lines[0])
    assert lines[1].startswith(f"priced {priced} orders")
    assert lines[1].endswith(f"shipped {jobs - priced} orders")
    assert lines[2].startswith(f"completed {jobs}, failed 0, cancelled 0")
    assert proc.stderr == ""
