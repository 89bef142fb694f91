"""An HTTP load generator on aiohttp and :func:`asyncworkers.dispatch`.

``await asyncworkers.loadgen.run(LoadConfig(url, concurrency=50, rate=1000, duration=10))``
sends the load and returns a :class:`LoadReport`: counts, errors by kind, status codes,
throughput, HDR-histogram latency percentiles (from each request's intended send time in
the open model, the uncorrected figure beside it) and a per-second timeline. The command
line is ``asyncworkers load URL``; docs/loadgen.md has the guide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

if TYPE_CHECKING:  # at run time each name loads on first use (aiohttp with the client)
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

# Where each name lives: the command line's parser needs only the light parsers of
# ``_config``, so ``asyncworkers --help`` loads neither aiohttp nor rich.
_HOMES: dict[str, str] = {
    "Knee": "._report",
    "LoadConfig": "._config",
    "LoadProcessError": "._processes",
    "LoadReport": "._report",
    "Progress": "._run",
    "Stage": "._config",
    "find_knee": "._api",
    "merge_reports": "._merge",
    "parse_duration": "._config",
    "parse_latency": "._config",
    "parse_stages": "._config",
    "run": "._api",
}

if not TYPE_CHECKING:  # hidden from type checkers, so that a misspelt name still fails there
    __getattr__, __dir__ = lazy_names(__name__, _HOMES)
