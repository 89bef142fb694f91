"""The ``worker`` options of the operations endpoint and the stuck-job watchdog."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..ops import Options, parse_address
from ._store_args import positive_seconds

__all__ = ["TOKEN_ENV", "add_ops_options", "ops_settings"]

#: The environment variable that holds the admin token (kept off the command line, where
#: other users of the machine could read it in the process list).
TOKEN_ENV = "ASYNCWORKERS_HTTP_TOKEN"

_DEFAULTS = Options()


def http_address(text: str) -> str:
    """``HOST:PORT``, checked here, bound when the worker starts."""
    try:
        parse_address(text)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_ops_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("operations (see docs/operations.md)")
    group.add_argument(
        "--http",
        type=http_address,
        metavar="HOST:PORT",
        help="serve /healthz, /readyz, /metrics and the dashboard here, e.g. 127.0.0.1:9600 "
        "(off by default; a bare PORT means loopback)",
    )
    group.add_argument(
        "--http-admin",
        action="store_true",
        help="let the dashboard retry and cancel jobs (anyone who reaches --http may; set "
        f"${TOKEN_ENV} to ask for a token instead)",
    )
    group.add_argument(
        "--lag-threshold",
        type=positive_seconds,
        default=_DEFAULTS.lag_threshold,
        help="seconds the event loop may stay blocked before /healthz fails (default: "
        f"{_DEFAULTS.lag_threshold:g})",
    )
    group.add_argument(
        "--store-refresh",
        type=positive_seconds,
        default=_DEFAULTS.refresh,
        metavar="SECONDS",
        help="longest age of the store's queue depth that /metrics and the dashboard show: "
        f"the store is read at most this often (default: {_DEFAULTS.refresh:g})",
    )
    group.add_argument(
        "--stuck-after",
        type=positive_seconds,
        metavar="SECONDS",
        help="log, count and show jobs running longer than this (off by default)",
    )
    group.add_argument(
        "--stuck-action",
        choices=("log", "cancel"),
        default="log",
        help="what to do with a stuck job as well as logging it (default: log)",
    )


def ops_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The Manager keywords for these options (empty when none is used)."""
    token = os.environ.get(TOKEN_ENV) or None
    if args.http is None and args.stuck_after is None:
        return {}
    if args.stuck_action == "cancel" and args.stuck_after is None:
        raise ValueError("--stuck-action cancel needs --stuck-after")
    options = Options(
        admin=args.http_admin,
        token=token,
        lag_threshold=args.lag_threshold,
        refresh=args.store_refresh,
        stuck_after=args.stuck_after,
        stuck_action=args.stuck_action,
    )
    return {"http": args.http, "ops": options}
