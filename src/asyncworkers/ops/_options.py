"""What an operations endpoint is told: its address, who may act, the thresholds.

Checked where they are made (a bad value fails at ``Options(...)`` or at ``--http``), and
light: nothing here imports aiohttp or prometheus-client.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["DEFAULT_PORT", "Options", "StuckAction", "parse_address"]

#: The port the docs and the CLI's examples use; any free one works.
DEFAULT_PORT = 9600

StuckAction = Literal["log", "cancel"]


@dataclass(frozen=True, slots=True)
class Options:
    """How the operations endpoint and the watchdog behave.

    :param admin: show the dashboard's Retry / Cancel buttons and accept their POSTs
        (without a *token*: anyone who can reach the address may use them)
    :param token: a secret that every admin POST must carry (``Authorization: Bearer ...``);
        giving one turns the admin actions on
    :param lag_threshold: seconds the event loop may stay blocked before ``/healthz`` fails
    :param refresh: seconds between two reads of the store's queue depth and dead letters
        (scrapes and the dashboard in between get the last reading)
    :param stuck_after: seconds a job may run before the watchdog calls it stuck (None: no
        watchdog)
    :param stuck_action: ``"log"`` (log, count, show) or ``"cancel"`` (and cancel it)
    :param stuck_interval: seconds between two looks of the watchdog (None: a quarter of
        *stuck_after*, at most 30)
    """

    admin: bool = False
    token: str | None = None
    lag_threshold: float = 5.0
    refresh: float = 5.0
    stuck_after: float | None = None
    stuck_action: StuckAction = "log"
    stuck_interval: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.admin, bool):
            raise TypeError(f"admin must be a bool, got {self.admin!r}")
        if self.token is not None and (not isinstance(self.token, str) or not self.token):
            raise TypeError(f"token must be a non-empty str or None, got {self.token!r}")
        _check_seconds("lag_threshold", self.lag_threshold)
        _check_seconds("refresh", self.refresh)
        if self.stuck_after is not None:
            _check_seconds("stuck_after", self.stuck_after)
        if self.stuck_interval is not None:
            _check_seconds("stuck_interval", self.stuck_interval)
        if self.stuck_action not in ("log", "cancel"):
            raise ValueError(f"stuck_action must be 'log' or 'cancel', got {self.stuck_action!r}")

    @property
    def actions(self) -> bool:
        """True when the dashboard may change jobs."""
        return self.admin or self.token is not None

    @property
    def watchdog_interval(self) -> float:
        if self.stuck_interval is not None:
            return self.stuck_interval
        assert self.stuck_after is not None
        return min(self.stuck_after / 4, 30.0)


def _check_seconds(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if math.isnan(value) or math.isinf(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``[v6]:PORT``, or a bare ``PORT`` meaning loopback) as a pair.

    Port 0 picks a free port. Raises ``ValueError`` naming what is wrong.
    """
    if not isinstance(text, str):
        raise TypeError(f"an HTTP address must be a str like '127.0.0.1:9600', got {text!r}")
    if text.isdigit():
        host, port_text = "127.0.0.1", text
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"expected HOST:PORT such as 127.0.0.1:{DEFAULT_PORT}, got {text!r}")
        if host.startswith("["):
            if not host.endswith("]"):
                raise ValueError(f"an IPv6 address goes in brackets, got {text!r}")
            host = host[1:-1]
            import ipaddress

            ipaddress.IPv6Address(host)  # ValueError names the problem
        elif ":" in host:
            raise ValueError(f"put an IPv6 address in brackets ([::1]:9600), got {text!r}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"the port must be a number from 0 to 65535, got {port_text!r}")
    return host, int(port_text)
