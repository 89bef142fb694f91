"""``Runtime(handle_signals=True)`` and ``aw.run``, with real signals sent to real processes.

Each scenario is a small program run in a child process on the asyncio or the uvloop loop.
It prints ``ready`` once its jobs are running; the test then sends the signals and reads
what the child reports on its way out. Jobs that must still be queued when the signal comes
wait for ``drain_started``, an event the child sets when the runtime logs that it drains, so
that no job can finish before the signal, however slow or fast the machine.
"""

from __future__ import annotations

import asyncio
import selectors
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import asyncworkers as aw
from _helpers import HANG_GUARD, LOOPS, SUBPROCESS_GUARD, loop_module

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# The child's prelude: run main() on the loop named in argv[1] and report the metrics;
# drain_started is set when a runtime logs that a signal started its drain.
PRELUDE = """\
import logging
import sys
import threading
import anyio
import asyncworkers as aw

drain_started = threading.Event()

class _WatchTheDrain(logging.StreamHandler):  # writes to stderr, as logging's default does
    def emit(self, record):
        super().emit(record)
        if "received: draining" in record.getMessage():
            drain_started.set()

logging.getLogger("asyncworkers").addHandler(_WatchTheDrain())

def report(rt):
    m = rt.metrics()
    print(f"completed={m.completed} cancelled={m.cancelled} failed={m.failed}", flush=True)

def start(main):
    anyio.run(main, backend="asyncio",
              backend_options={"use_uvloop": sys.argv[1] == "uvloop"})
"""


class Child:
    """A child process running one scenario, with line reads bounded in time."""

    def __init__(self, tmp_path: Path, body: str, loop: str) -> None:
        script = tmp_path / "child.py"
        script.write_text(PRELUDE + textwrap.dedent(body), encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, str(script), loop],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self._selector = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self._selector.register(self.proc.stdout, selectors.EVENT_READ)

    def read_line(self, timeout: float = SUBPROCESS_GUARD) -> str:
        """The child's next stdout line; fails the test rather than hang."""
        assert self.proc.stdout is not None
        if not self._selector.select(timeout):
            self.proc.kill()
            pytest.fail(f"no output from the child in {timeout} s")
        return self.proc.stdout.readline().strip()

    def expect(self, line: str) -> None:
        got = self.read_line()
        assert got == line, f"expected {line!r}, got {got!r}; stderr:\n{self.stderr()}"

    def send(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = SUBPROCESS_GUARD) -> tuple[int, str, str]:
        """Exit code, remaining stdout and stderr of the child."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"the child did not exit in {timeout} s:\n{out}\n{err}")
        return self.proc.returncode, out.strip(), err

    def stderr(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
        assert self.proc.stderr is not None
        return self.proc.stderr.read()


Spawn = Callable[[str, str], Child]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start children (in a directory each); kill any left running after the test."""
    children: list[Child] = []

    def start(body: str, loop: str) -> Child:
        directory = tmp_path / f"child{len(children)}"
        directory.mkdir()
        children.append(Child(directory, body, loop))
        return children[-1]

    yield start
    for child in children:
        if child.proc.poll() is None:
            child.proc.kill()
        child.proc.wait()


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_first_signal_drains_every_queued_job_and_ends_the_block(
    spawn: Spawn, loop: str, signum: signal.Signals
) -> None:
    child = spawn(
        """
        def step(i):
            assert drain_started.wait(30)  # blocking work in a thread, until the signal
            return i

        async def main():
            async with aw.Runtime(workers=2, handle_signals=True) as rt:
                for i in range(20):
                    rt.submit_nowait(step, i)
                print("ready", flush=True)
                await anyio.sleep_forever()
                print("not reached", flush=True)
            report(rt)
            print("after the block", flush=True)

        start(main)
        """,
        loop,
    )
    child.expect("ready")
    child.send(signum)
    code, out, err = child.finish()
    assert code == 0, err
    assert out.splitlines() == ["completed=20 cancelled=0 failed=0", "after the block"]
    assert f"{signum.name} received: draining" in err


@pytest.mark.parametrize("loop", LOOPS)
def test_second_signal_cancels_what_is_left(spawn: Spawn, loop: str) -> None:
    child = spawn(
        """
        started = []
        both_started = anyio.Event()

        async def stuck():
            started.append(1)
            if len(started) == 2:
                both_started.set()
            await anyio.sleep_forever()

        async def main():
            async with aw.Runtime(workers=2, handle_signals=True) as rt:
                jobs = [rt.submit_nowait(stuck) for _ in range(5)]
                with anyio.fail_after(30):
                    await both_started.wait()
                print("ready", flush=True)
                try:
                    await anyio.sleep_forever()
                finally:
                    print("body cancelled", flush=True)
            report(rt)
            print(sorted({job.state.name for job in jobs}), flush=True)

        start(main)
        """,
        loop,
    )
    child.expect("ready")
    child.send(signal.SIGINT)
    child.expect("body cancelled")  # the drain has begun: the jobs never end by themselves
    child.send(signal.SIGTERM)
    code, out, err = child.finish()
    assert code == 0, err
    assert out.splitlines() == ["completed=0 cancelled=5 failed=0", "['CANCELLED']"]
    assert "SIGTERM received: cancelling the jobs" in err


@pytest.mark.parametrize("loop", LOOPS)
def test_the_drain_ends_at_the_shutdown_deadline(spawn: Spawn, loop: str) -> None:
    child = spawn(
        """
        async def quick():
            return 1

        async def stuck():
            await anyio.sleep_forever()

        async def main():
            async with aw.Runtime(workers=4, handle_signals=True, shutdown_timeout=0.3) as rt:
                rt.submit_nowait(stuck)
                for job in [rt.submit_nowait(quick) for _ in range(3)]:
                    await job  # done before the signal: only `stuck` is left to the drain
                print("ready", flush=True)
                await anyio.sleep_forever()
            report(rt)

        start(main)
        """,
        loop,
    )
    child.expect("ready")
    child.send(signal.SIGTERM)
    code, out, err = child.finish()
    assert code == 0, err
    assert out == "completed=3 cancelled=1 failed=0"


@pytest.mark.parametrize("loop", LOOPS)
def test_one_signal_drains_every_runtime_that_asked(spawn: Spawn, loop: str) -> None:
    child = spawn(
        """
        def step(i):
            assert drain_started.wait(30)  # until the signal
            return i

        async def serve(name, task_status=anyio.TASK_STATUS_IGNORED):
            async with aw.Runtime(workers=1, handle_signals=True) as rt:
                for i in range(5):
                    rt.submit_nowait(step, i)
                task_status.started()
                await anyio.sleep_forever()
            print(name, end=" ")
            report(rt)

        async def main():
            async with anyio.create_task_group() as tg:
                await tg.start(serve, "a")
                await tg.start(serve, "b")
                print("ready", flush=True)

        start(main)
        """,
        loop,
    )
    child.expect("ready")
    child.send(signal.SIGTERM)
    code, out, err = child.finish()
    assert code == 0, err
    assert sorted(out.splitlines()) == [
        "a completed=5 cancelled=0 failed=0",
        "b completed=5 cancelled=0 failed=0",
    ]


@pytest.mark.parametrize("loop", LOOPS)
def test_without_handle_signals_sigterm_keeps_its_default(spawn: Spawn, loop: str) -> None:
    child = spawn(
        """
        async def main():
            async with aw.Runtime(handle_signals=True):
                pass  # installs, then gives back, the handlers
            async with aw.Runtime():
                print("ready", flush=True)
                await anyio.sleep_forever()

        start(main)
        """,
        loop,
    )
    child.expect("ready")
    child.send(signal.SIGTERM)
    code, _, _ = child.finish()
    assert code == -signal.SIGTERM


def test_run_uses_uvloop_when_installed() -> None:
    assert aw.run(loop_module).startswith("uvloop")


def test_run_passes_arguments_and_returns_the_result() -> None:
    async def add(a: int, b: int) -> int:
        return a + b

    assert aw.run(add, 2, 3) == 5


def test_run_needs_a_callable() -> None:
    with pytest.raises(TypeError, match="run\\(\\) needs an async function"):
        aw.run(42)  # type: ignore[arg-type]


async def test_handlers_are_installed_while_open_and_restored_after() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    async with aw.Runtime(handle_signals=True), aw.Runtime(handle_signals=True):
        during = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    after = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    assert during != before
    assert after == before


def test_handle_signals_outside_the_main_thread_is_a_clear_error() -> None:
    errors: list[BaseException] = []

    async def main() -> None:
        async with aw.Runtime(handle_signals=True):
            pass

    def in_thread() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(timeout=HANG_GUARD)
    assert not thread.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], RuntimeError)
    assert "main thread" in str(errors[0])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"handle_signals": "yes"}, TypeError, "handle_signals must be a bool, got 'yes'"),
        ({"shutdown_timeout": -1}, ValueError, "shutdown_timeout must be >= 0, got -1"),
        ({"shutdown_timeout": "1"}, TypeError, "shutdown_timeout must be a number"),
    ],
)
def test_bad_options(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        aw.Runtime(**kwargs)  # type: ignore[arg-type]


def test_the_child_helper_notices_a_silent_child(spawn: Spawn) -> None:
    # Guards the guard: a child that prints nothing fails the read instead of hanging.
    child = spawn("import time\ntime.sleep(30)\n", "asyncio")
    with pytest.raises(pytest.fail.Exception, match="no output"):
        child.read_line(timeout=0.2)
    assert child.proc.wait(timeout=SUBPROCESS_GUARD) == -signal.SIGKILL
