"""``serve()``: the operations endpoint of a plain Runtime (or of a Manager started without
``http=``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._options import DEFAULT_PORT, Options

if TYPE_CHECKING:
    from ._server import Ops

__all__ = ["serve"]


def serve(
    target: object,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    options: Options | None = None,
) -> Ops:
    """The operations endpoint of *target* (an ``aw.Runtime`` or an ``aw.store.Manager``,
    already started), to enter with ``async with``::

        async with aw.Runtime() as rt, aw.ops.serve(rt, "127.0.0.1", 9600) as ops:
            ...  # GET ops.url + "/metrics", "/healthz", "/readyz", "/"

    It serves on *target*'s own event loop, on *host* (loopback unless you name another
    address) and *port* (0: a free one, see ``ops.address``). *options* set the admin
    actions, the thresholds and the stuck-job watchdog.
    """
    if not isinstance(host, str) or not host:
        raise TypeError(f"host must be a non-empty str, got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int from 0 to 65535, got {port!r}")
    from ._server import Ops  # here, not at import: `import asyncworkers` stays light

    return Ops(target, (host, port), options or Options())
