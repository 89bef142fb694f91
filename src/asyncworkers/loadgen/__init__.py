"""An HTTP load generator on aiohttp and :func:`asyncworkers.dispatch`.

``await asyncworkers.loadgen.run(LoadConfig(url, concurrency=50, rate=1000, duration=10))``
sends the load and returns a :class:`LoadReport`: counts, errors by kind, status codes,
throughput, HDR-histogram latency percentiles (from each request's intended send time in
the open model, the uncorrected figure beside it) and a per-second timeline. The command
line is ``asyncworkers load URL``; docs/loadgen.md has the guide.
"""

from __future__ import annotations

from ._api import find_knee, run
from ._config import LoadConfig, Stage, parse_duration, parse_latency, parse_stages
from ._merge import merge_reports
from ._processes import LoadProcessError
from ._report import Knee, LoadReport
from ._run import Progress

__all__ = (
    "Knee",
    "LoadConfig",
    "LoadProcessError",
    "LoadReport",
    "Progress",
    "Stage",
    "find_knee",
    "merge_reports",
    "parse_duration",
    "parse_latency",
    "parse_stages",
    "run",
)
