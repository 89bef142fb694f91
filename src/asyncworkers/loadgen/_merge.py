"""Reports of load generators on several hosts, added into one: ``asyncworkers load merge``.

Each JSON report (``asyncworkers load --json``) carries, under ``recorder``, what its run
recorded in mergeable form: the HDR histograms (compressed, base64) and the per-second
outcome counts. Adding histograms is exact, so the merged percentiles are those one run over
the union of the requests would report; averaging each host's percentiles would not give
them. The timelines are added second by second, each from its own start (the hosts start a
little apart; their clocks need not agree).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._config import LoadConfig
from ._recorder import Recorder
from ._report import LoadReport

__all__ = ["merge_reports"]


def merge_reports(reports: Sequence[Mapping[str, Any]], names: Sequence[str] = ()) -> LoadReport:
    """One report for several runs' JSON reports (the dicts ``--json`` wrote).

    They must be of one URL, method and model; ``--find-knee`` reports cannot be merged (each
    is the report of one step). *names* (file names) make the errors say which report is
    wrong. ``ValueError`` names the first report that does not fit.
    """
    if not reports:
        raise ValueError("merge needs at least one report")
    names = list(names) or [f"report {i + 1}" for i in range(len(reports))]
    if len(names) != len(reports):
        raise ValueError(f"{len(names)} names for {len(reports)} reports")
    recorders = [_recorder(report, name) for report, name in zip(reports, names, strict=True)]
    first = reports[0]
    for report, name in zip(reports[1:], names[1:], strict=True):
        for key in ("url", "method", "model"):
            if report.get(key) != first.get(key):
                raise ValueError(
                    f"{name}: {key} {report.get(key)!r} differs from {first.get(key)!r} in "
                    f"{names[0]}: only runs of one URL, method and model merge"
                )
    open_model = first["model"] == "open"
    rates = [r.get("target_rate") or 0.0 for r in reports]
    concurrency = sum(int(r["concurrency"]) for r in reports)
    config = LoadConfig(
        url=first["url"],
        method=first["method"],
        concurrency=concurrency,
        rate=sum(rates) if open_model and sum(rates) > 0 else None,
        processes=sum(int(r["processes"]) for r in reports),
    )
    return LoadReport(
        config,
        Recorder.merge(recorders),
        config.rate,
        interrupted=any(bool(r.get("interrupted")) for r in reports),
    )


def _recorder(report: Mapping[str, Any], name: str) -> Recorder:
    if not isinstance(report, Mapping):
        raise ValueError(f"{name}: not a load report (a JSON object), got {type(report).__name__}")
    if "knee" in report or "knee_steps" in report:
        raise ValueError(f"{name}: a --find-knee report (one step's run) cannot be merged")
    missing = [k for k in ("url", "method", "model", "concurrency", "processes") if k not in report]
    if missing:
        raise ValueError(f"{name}: not a load report: no {', '.join(missing)}")
    data = report.get("recorder")
    if not isinstance(data, Mapping):
        raise ValueError(
            f"{name}: has no histograms ('recorder'): written by an older asyncworkers load? "
            "Run it again with this version"
        )
    try:
        return Recorder.load(dict(data))
    except Exception as exc:  # hdrh's decoding raises anything on a damaged string
        raise ValueError(
            f"{name}: its histograms cannot be read ({type(exc).__name__}: {exc})"
        ) from None
