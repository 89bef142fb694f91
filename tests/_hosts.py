"""Hosts for the scale-out tests: Linux network namespaces on a private bridge.

``with network(3) as net:`` makes three "hosts", each a network namespace with its own
loopback and one veth link into a bridge that this run made, and gives the bridge an address
of a /24 that nothing else on the machine uses. The bridge's address (``net.gateway``) is
where a test's own servers listen (a private PostgreSQL, a :class:`DelayProxy`); each host
reaches it, and the others, over the bridge, and nothing beyond: no forwarding, no route
out. A host runs commands with ``ip netns exec`` (:meth:`Host.popen`, :meth:`Host.run`),
and :meth:`Host.cut` / :meth:`Host.restore` pull and put back its cable (``ip link set ...
down/up`` on the bridge's end of its link: packets are dropped, connections hang, as when a
switch port dies). Everything made is removed on the way out, failed test or not, and a
new network first removes what a crashed earlier run of this pid left (names carry the pid).

``tc netem`` is not in this kernel, so latency comes from :class:`DelayProxy`: a TCP proxy
in a thread of the test process that holds every chunk for a fixed time in each direction.

All of this needs root (``CAP_NET_ADMIN``) and the ``ip`` command; without them a test that
asks for hosts FAILS with the reason, never skips. CI runs as root.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Candidate subnets: 10.213.0.0/24 .. 10.213.255.0/24; a run takes the first one that no
# address or route of the machine overlaps (under a lock, so that parallel runs differ).
_POOL = ipaddress.IPv4Network("10.213.0.0/16")
_LOCK = Path("/tmp/asyncworkers-hosts.lock")
# Our names: aw<pid><letter>-<role>, at most 15 characters (the kernel's IFNAMSIZ - 1).
_NAME = re.compile(r"^aw(\d+)[a-z]-")
_runs = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def require_root() -> None:
    """Fail (never skip) with the reason when namespaces cannot be made here."""
    if os.geteuid() != 0:
        pytest.fail(
            "the multi-host tests make network namespaces (ip netns) and need root "
            f"(CAP_NET_ADMIN); running as uid {os.geteuid()}: run them as root (CI does)",
            pytrace=False,
        )
    if shutil.which("ip") is None:
        pytest.fail(
            "the multi-host tests need the `ip` command (apt-get install iproute2)", pytrace=False
        )


@dataclass
class Host:
    """One host: a network namespace with an address on the bridge."""

    name: str  # the namespace
    address: str
    link: str  # the bridge's end of its veth pair (what cut() takes down)
    env: dict[str, str] = field(default_factory=dict)  # added to every command's environment
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    def command(self, argv: Sequence[str]) -> list[str]:
        """*argv* as run inside this host."""
        return ["ip", "netns", "exec", self.name, *argv]

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start *argv* in this host (``ip netns exec`` execs it: the Popen's pid is the
        command's). It is killed when the network is torn down, if still running."""
        env = {**os.environ, **self.env, **kwargs.pop("env", {})}
        proc = subprocess.Popen(self.command(argv), env=env, **kwargs)
        self.procs.append(proc)
        return proc

    def run(self, argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run *argv* in this host to its end; its output; raises on a non-zero status."""
        env = {**os.environ, **self.env}
        return subprocess.run(
            self.command(argv), env=env, capture_output=True, text=True, timeout=timeout,
            check=True,
        )  # fmt: skip

    def cut(self) -> None:
        """Pull the cable: the host's packets are dropped (its connections hang, new ones
        fail) until :meth:`restore`."""
        _ip("link", "set", self.link, "down")

    def restore(self) -> None:
        """Put the cable back: the connections that hung go on where they were."""
        _ip("link", "set", self.link, "up")


@dataclass
class Network:
    """Hosts on one private bridge; ``gateway`` is the bridge's own address (root side)."""

    prefix: str
    bridge: str
    subnet: ipaddress.IPv4Network
    gateway: str
    hosts: list[Host]

    def __getitem__(self, index: int) -> Host:
        return self.hosts[index]

    def __len__(self) -> int:
        return len(self.hosts)

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts)


@contextlib.contextmanager
def network(count: int) -> Iterator[Network]:
    """*count* hosts on a new bridge; everything removed on the way out."""
    require_root()
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    prefix = f"aw{os.getpid()}{'abcdefghijklmnopqrstuvwxyz'[next(_runs) % 26]}-"
    remove_leftovers(prefix)
    net: Network | None = None
    try:
        with _locked():
            subnet = _free_subnet()
            net = _make(prefix, subnet, count)
        yield net
    finally:
        teardown(prefix, net)


def _make(prefix: str, subnet: ipaddress.IPv4Network, count: int) -> Network:
    addresses = [str(a) for a in itertools.islice(subnet.hosts(), count + 1)]
    gateway, bridge = addresses[0], f"{prefix}br"
    _ip("link", "add", bridge, "type", "bridge")
    _ip("addr", "add", f"{gateway}/{subnet.prefixlen}", "dev", bridge)
    _ip("link", "set", bridge, "up")
    hosts = []
    for i, address in enumerate(addresses[1:]):
        ns, outer, inner = f"{prefix}{i}", f"{prefix}h{i}", f"{prefix}n{i}"
        _ip("netns", "add", ns)
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", ns)
        _ip("link", "set", outer, "master", bridge)
        _ip("link", "set", outer, "up")
        inside = ["netns", "exec", ns, "ip"]
        _ip(*inside, "link", "set", "lo", "up")  # servers on 127.0.0.1 inside the host
        _ip(*inside, "link", "set", inner, "name", "eth0")
        _ip(*inside, "addr", "add", f"{address}/{subnet.prefixlen}", "dev", "eth0")
        _ip(*inside, "link", "set", "eth0", "up")
        hosts.append(Host(ns, address, outer))
    return Network(prefix, bridge, subnet, gateway, hosts)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    with _LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _free_subnet() -> ipaddress.IPv4Network:
    """The first /24 of the pool that no address or route of the machine overlaps."""
    taken = []
    for line in _ip("-4", "-o", "addr", "show").stdout.splitlines():
        taken.append(ipaddress.ip_interface(line.split()[3]).network)
    for route in json.loads(_ip("-4", "-j", "route", "show", "table", "all").stdout or "[]"):
        dst = route.get("dst", "default")
        if dst != "default":
            with contextlib.suppress(ValueError):
                taken.append(ipaddress.ip_network(dst, strict=False))
    for subnet in _POOL.subnets(new_prefix=24):
        if not any(subnet.overlaps(t) for t in taken):
            return subnet
    raise RuntimeError(f"no free /24 left in {_POOL} for a test network")


def teardown(prefix: str, net: Network | None) -> None:
    """Kill what runs in the hosts, then delete the namespaces, links and bridge."""
    if net is not None:
        for host in net.hosts:
            for proc in host.procs:
                if proc.poll() is None:
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
    remove_leftovers(prefix)


def remove_leftovers(prefix: str | None = None) -> None:
    """Delete the namespaces and links named *prefix* (this run's), and those of our
    naming scheme whose process is gone (a crashed earlier run), with their processes."""

    def ours(name: str) -> bool:
        if prefix is not None and name.startswith(prefix):
            return True
        match = _NAME.match(name)
        return match is not None and not _alive(int(match.group(1)))

    for ns in _ip("netns", "list").stdout.split("\n"):
        name = ns.split(" ")[0]
        if name and ours(name):
            _kill_inside(name)
            _ip("netns", "del", name, check=False)
    for link in json.loads(_ip("-j", "link", "show").stdout or "[]"):
        name = link.get("ifname", "")
        if ours(name):
            _ip("link", "del", name, check=False)  # a veth's peer goes with it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_inside(ns: str) -> None:
    pids = _ip("netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _alive(int(p)) and Path(f"/proc/{p}").exists()]
        time.sleep(0.02)


# -- latency -------------------------------------------------------------------------------


class DelayProxy:
    """A TCP proxy ``listen_host:port -> upstream`` that delays every chunk by *one_way*
    seconds in each direction (the round trip grows by twice that), keeping order, without
    limiting throughput (a delay line, not stop-and-wait). Runs on an event loop in a thread
    of its own; ``with DelayProxy(...) as proxy:`` then connect to ``proxy.port``."""

    def __init__(self, listen_host: str, upstream: tuple[str, int], one_way: float) -> None:
        self.listen_host = listen_host
        self.upstream = upstream
        self.one_way = one_way
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __enter__(self) -> DelayProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.listen_host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._pipe(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(
                self._delay_line(reader, up_writer), self._delay_line(up_reader, writer)
            )
        finally:
            for w in (writer, up_writer):
                w.close()

    async def _delay_line(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """Read chunks as they come and write each *one_way* seconds after it came."""
        loop = asyncio.get_running_loop()
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await line.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if not data:
                    with contextlib.suppress(OSError):
                        dst.write_eof()
                    return
                dst.write(data)
                await dst.drain()

        sender = asyncio.ensure_future(send())
        try:
            while True:
                try:
                    data = await src.read(65536)
                except OSError:
                    data = b""
                line.put_nowait((loop.time() + self.one_way, data))
                if not data:
                    break
            await sender
        except OSError:
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await sender
