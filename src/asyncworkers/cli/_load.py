"""``asyncworkers load URL``: the HTTP load generator on the command line.

Bad input is one line on stderr naming the option and the value, and exit status 2: the
argument types below check each value, and :func:`_config_from` the combinations. Ctrl-C
stops the run; the partial report is printed and written, and the exit status is 130.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import asyncworkers as aw
from asyncworkers import loadgen

# Only the light parsers here: ``asyncworkers --help`` builds this command's parser, and
# must not load aiohttp, rich or asyncio (the run imports them, in _cmd_load).
from asyncworkers.loadgen._config import (
    DEFAULT_MAX_BODY,
    METHODS,
    auto_processes,
    parse_duration,
    parse_latency,
    parse_size,
    parse_stages,
    validate_url,
)

if TYPE_CHECKING:
    import asyncio

    from rich.console import Console

from ._args import CommandParser, Commands, explained, positive_int

__all__ = ["add_command"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C


class _OneLineParser(CommandParser):
    """A parser whose errors are one line (``asyncworkers load: error: ...``), no usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {explained(message)}\n")


def _type(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser that raises ValueError with a message."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = convert.__name__
    return parse


def positive_float(text: str) -> float:
    """A finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number > 0, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise ValueError(f"expected a number > 0, got {text!r}")
    return value


def processes(text: str) -> int:
    """``auto`` (one per CPU this process may use) or a whole number >= 1."""
    if text == "auto":
        return auto_processes()
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise ValueError(f"expected 'auto' or a whole number >= 1, got {text!r}") from None


def header(text: str) -> tuple[str, str]:
    """``Name: value``."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or name != name.strip():
        raise ValueError(f"expected 'Name: value', got {text!r}")
    return name, value.strip()


def method(text: str) -> str:
    """An HTTP method."""
    if text.upper() not in METHODS:
        raise ValueError(f"expected one of {', '.join(sorted(METHODS))}, got {text!r}")
    return text.upper()


def body_file(text: str) -> bytes:
    """The contents of a readable file."""
    try:
        return Path(text).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {text!r}: {exc.strerror or exc}") from None


def add_command(commands: Commands) -> None:
    """Add ``load`` to the ``asyncworkers`` parser."""
    load = commands.add_parser(
        "load",
        help="send HTTP load to a URL and report throughput, errors and latency",
        description=(
            "Send HTTP requests to URL with aiohttp and report throughput, errors by kind "
            "and latency percentiles (HDR histograms). Closed model: -c requests always in "
            "flight. Open model (-r or --stages): requests leave at their intended times, "
            "and latency counts from those times (the uncorrected figure is shown beside)."
        ),
        epilog=(
            "asyncworkers load merge A.json B.json ... [--json OUT]: merge the --json reports "
            "of runs on several hosts (the HDR histograms add exactly)."
        ),
    )
    # argparse gives no per-subparser class; ours prints one line instead of the usage.
    load.__class__ = _OneLineParser
    load.add_argument("url", metavar="URL", type=_type(validate_url), help="http(s) URL")
    load.add_argument(
        "-c",
        "--concurrency",
        type=positive_int,
        default=10,
        help="requests in flight at most, and connections (default: 10)",
    )
    load.add_argument(
        "-r", "--rate", type=_type(positive_float), help="open model: requests per second"
    )
    load.add_argument(
        "--stages",
        type=_type(parse_stages),
        help="open model, the rate ramping linearly from 0 through DURATION:RATE stages, "
        "e.g. 10s:100,30s:1000",
    )
    load.add_argument(
        "-d",
        "--duration",
        type=_type(parse_duration),
        help="how long to send: 10, 10s, 2m (default: 10s unless -n is given)",
    )
    load.add_argument("-n", "--requests", type=positive_int, help="how many requests")
    load.add_argument("-m", "--method", type=_type(method), default="GET", help="HTTP method")
    load.add_argument(
        "-H",
        "--header",
        type=_type(header),
        action="append",
        default=[],
        help="a request header 'Name: value' (repeatable)",
    )
    bodies = load.add_mutually_exclusive_group()
    bodies.add_argument("--body", help="the request body")
    bodies.add_argument("--body-file", type=_type(body_file), help="read the body from a file")
    load.add_argument(
        "--timeout",
        type=_type(parse_duration),
        default=10.0,
        help="per request: 10s, 500ms (default: 10s)",
    )
    load.add_argument(
        "--max-body",
        type=_type(parse_size),
        default=DEFAULT_MAX_BODY,
        metavar="SIZE",
        help="bytes of a response body read at most: 65536, 10MB, 1GiB; a longer body is a "
        "body_too_large error and its connection is dropped "
        f"(default: {DEFAULT_MAX_BODY // 2**20}MiB)",
    )
    load.add_argument(
        "--processes",
        type=_type(processes),
        default=1,
        help="N or auto: one event loop and session per process, reports merged (default: 1)",
    )
    load.add_argument("--json", metavar="PATH", type=Path, help="write the report as JSON")
    load.add_argument(
        "--plot",
        metavar="PATH",
        type=Path,
        help="write throughput and latency over time as a PNG (needs matplotlib)",
    )
    load.add_argument("-q", "--quiet", action="store_true", help="no live progress")
    load.add_argument(
        "--find-knee",
        action="store_true",
        help="raise the rate step by step; report the highest one whose p99 stays under --p99",
    )
    load.add_argument(
        "--p99",
        type=_type(parse_latency),
        help="the p99 target of --find-knee: 50ms, 0.2s",
    )
    load.set_defaults(handler=_cmd_load)


def _config_from(args: argparse.Namespace) -> loadgen.LoadConfig | str:
    """The run's config, or a one-line message naming the options that do not fit."""
    if args.stages is not None and args.rate is not None:
        return f"argument --stages: cannot be combined with --rate {args.rate:g}"
    if args.stages is not None and args.duration is not None:
        return "argument --stages: the stages set the duration; drop -d/--duration"
    if args.processes > args.concurrency:
        return (
            f"argument --processes: {args.processes} processes need at least as many "
            f"connections, got --concurrency {args.concurrency}"
        )
    if args.requests is not None and args.requests < args.processes:
        return (
            f"argument -n/--requests: {args.requests} is fewer than --processes "
            f"{args.processes} (each process sends its share)"
        )
    if args.find_knee and args.p99 is None:
        return "argument --find-knee: needs a target, e.g. --p99 50ms"
    if args.p99 is not None and not args.find_knee:
        return "argument --p99: only used with --find-knee"
    if args.find_knee and (args.stages is not None or args.requests is not None):
        return "argument --find-knee: cannot be combined with --stages or -n/--requests"
    from asyncworkers.loadgen._client import ensure_open_files
    from asyncworkers.loadgen._plot import can_plot

    if args.plot is not None and not can_plot():
        return (
            f"argument --plot: {str(args.plot)!r} needs matplotlib: "
            "pip install 'asyncworkers[plot]'"
        )
    try:
        ensure_open_files(args.concurrency)
    except ValueError as exc:
        return f"argument --concurrency: {exc}"
    body = args.body.encode() if args.body is not None else args.body_file
    try:
        return loadgen.LoadConfig(
            url=args.url,
            concurrency=args.concurrency,
            rate=args.rate,
            stages=args.stages or (),
            duration=args.duration,
            requests=args.requests,
            method=args.method,
            headers=dict(args.header),
            body=body,
            timeout=args.timeout,
            processes=args.processes,
            max_body=args.max_body,
        )
    except ValueError as exc:  # every value was checked above; this names the rest
        return f"arguments: {exc}"


def _cmd_load(args: argparse.Namespace) -> int:
    config = _config_from(args)
    if isinstance(config, str):
        print(f"asyncworkers load: error: {config}", file=sys.stderr)
        return EXIT_USAGE
    from rich.console import Console

    from asyncworkers.loadgen._plot import plot

    out = Console()
    progress = None if args.quiet else Console(stderr=True)
    try:
        report = aw.run(_load, config, args.p99 if args.find_knee else None, progress)
    except loadgen.LoadProcessError as exc:  # a process died: no total to report
        print(f"asyncworkers load: error: {exc}", file=sys.stderr)
        return 1
    report.render(out)
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    if args.plot is not None:
        plot(report, args.plot)
    if report.interrupted:
        return EXIT_INTERRUPTED
    return 1 if args.find_knee and report.knee is None else 0


async def _load(
    config: loadgen.LoadConfig, p99: float | None, console: Console | None
) -> loadgen.LoadReport:
    """Run (or search for the knee), stopping on the first SIGINT or SIGTERM; live
    progress on *console* when given."""
    import asyncio

    from rich.live import Live
    from rich.text import Text

    token = aw.CancellationToken()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _stop, loop, token, signum)
    try:
        if console is None:
            return await _run_or_knee(config, p99, token, None)
        line = Text("starting...")
        with Live(line, console=console, transient=True, refresh_per_second=4):

            def show(p: loadgen.Progress) -> None:
                line.plain = (
                    f"{p.elapsed:6.1f} s  {p.requests} requests  {p.rate:,.0f} req/s  "
                    f"p99 {p.p99_ms:.1f} ms  {p.errors} errors"
                )

            return await _run_or_knee(config, p99, token, show)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _stop(
    loop: asyncio.AbstractEventLoop, token: aw.CancellationToken, signum: signal.Signals
) -> None:
    """The first signal stops the run; a second one ends the program at once."""
    token.cancel(f"stopped by {signal.Signals(signum).name}")
    loop.remove_signal_handler(signum)


async def _run_or_knee(
    config: loadgen.LoadConfig,
    p99: float | None,
    token: aw.CancellationToken,
    on_progress: Callable[[loadgen.Progress], object] | None,
) -> loadgen.LoadReport:
    if p99 is None:
        return await loadgen.run(config, token=token, on_progress=on_progress)
    return await loadgen.find_knee(config, p99, token=token, on_progress=on_progress)
