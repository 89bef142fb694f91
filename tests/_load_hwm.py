"""``asyncworkers load`` in this process, then its peak memory: for tests/test_loadgen_bodies.py.

Run as ``python tests/_load_hwm.py OUT.json load URL ...``: runs the command line (one
process: ``--processes 1`` runs the load in this one) and writes ``{"rc": status,
"vmhwm_kb": peak resident set}`` to OUT.json, the peak read from /proc/self/status.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from asyncworkers.cli import main


def peak_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    rc = main(sys.argv[2:])
    Path(sys.argv[1]).write_text(json.dumps({"rc": rc, "vmhwm_kb": peak_rss_kb()}))
