"""The store commands (enqueue, status, retry) run as users run them, in a subprocess."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _store_support import REPO, TASKS, StoreFactory, query
from asyncworkers.cli import main
from asyncworkers.store import Store, StoreUnavailable


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncworkers", *args],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "COLUMNS": "120", "NO_COLOR": "1", **(env or {})},
    )  # fmt: skip


class Cli:
    """``asyncworkers ARGS`` run in this process (a subprocess per call costs seconds on a
    loaded machine; tests/test_store_cli.py runs the commands as subprocesses)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            status = main(list(args))
        except SystemExit as exit_:
            status = int(exit_.code or 0)
        out = self.capsys.readouterr()
        return subprocess.CompletedProcess(list(args), status, out.out, out.err)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("NO_COLOR", "1")
    return Cli(capsys)


def one_error_line(proc: subprocess.CompletedProcess[str], expected: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "error" in line]) == 1


def test_enqueue_status_retry(store_factory: StoreFactory) -> None:
    url = store_factory.url
    first = cli("enqueue", "--store", url, "echo", '{"value": 1}', "--priority", "5")
    assert first.returncode == 0, first.stderr
    job_id = int(first.stdout)
    keyed = [cli("enqueue", "--store", url, "echo", "--key", "k").stdout for _ in range(2)]
    assert keyed[0] == keyed[1]
    checked = cli("enqueue", "--store", url, "--tasks", TASKS, "mark", '{"path": "x"}')
    assert checked.returncode == 0, checked.stderr

    async def kill(store: Store) -> None:
        (claimed, *_) = await store.claim(None, 1, 30, "cli-test")
        assert claimed.id == job_id  # priority 5 first
        await store.fail(claimed.id, claimed.token, "Boom: broken", None)

    query(store_factory, kill)
    status = cli("status", "--store", url, "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["counts"] == {
        "queued": 2, "running": 0, "succeeded": 0, "dead": 1, "cancelled": 0,
    }  # fmt: skip
    assert shown["queues"]["default"]["dead"] == 1
    assert shown["dead"][0]["id"] == job_id
    assert shown["dead"][0]["error"] == "Boom: broken"
    assert shown["oldest_waiting"]["task"] == "echo"
    table = cli("status", "--store", url)
    assert table.returncode == 0, table.stderr
    assert "Dead letters" in table.stdout
    assert "Boom: broken" in table.stdout

    assert cli("retry", "--store", url, str(job_id)).returncode == 0
    again = cli("retry", "--store", url, str(job_id))
    assert again.returncode == 1
    assert "it is queued" in again.stderr
    assert cli("retry", "--store", url, "999").returncode == 1


def test_enqueue_from_json_lines(
    store_factory: StoreFactory, tmp_path: Path, run: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = store_factory.url
    lines = tmp_path / "jobs.jsonl"
    lines.write_text("".join(f'{{"path": "p{i}"}}\n' for i in range(50)) + "\n")
    added = run("enqueue", "--store", url, "--tasks", TASKS, "mark", "--from", str(lines),
                "--queue", "bulk", "--priority", "3")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "added 50 job(s) of mark"
    counts = query(store_factory, lambda store: store.queue_counts())
    assert counts["bulk"]["queued"] == 50
    # from stdin, without a registry
    monkeypatch.setattr("sys.stdin", io.StringIO('{"value": 1}\n{"value": 2}\n'))
    piped = run("enqueue", "--store", url, "echo", "--from", "-")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.strip() == "added 2 job(s) of echo"
    # a bad line: its number named, and none of the file added
    for bad, expected in (
        ('{"path": "ok"}\n{"path": "ok"}\n[3]\n', "line 3: expected a JSON object"),
        ('{"path": "ok"}\n{"wrong": 1}\n', "line 2: arguments {'wrong': 1} do not fit"),
        ('{"path": "ok"}\n{nope\n', "line 2: expected a JSON object"),
    ):
        lines.write_text(bad)
        one_error_line(
            run("enqueue", "--store", url, "--tasks", TASKS, "mark", "--from", str(lines)),
            expected,
        )
    total = query(store_factory, lambda store: store.counts())
    assert total["queued"] == 52


def test_enqueue_from_stdin_in_a_subprocess(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    piped = subprocess.run(
        [sys.executable, "-m", "asyncworkers", "enqueue", "--store", url, "echo", "--from", "-"],
        input='{"value": 1}\n{"value": 2}\n', cwd=REPO, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.strip() == "added 2 job(s) of echo"


def test_store_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    proc = cli("enqueue", "echo", env={"ASYNCWORKERS_STORE": url})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "env.db").exists()
    shown = json.loads(cli("status", "--json", env={"ASYNCWORKERS_STORE": url}).stdout)
    assert shown["counts"]["queued"] == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["enqueue", "echo", "[1, 2]"], "expected a JSON object"),
        (["enqueue", "echo", "{nope"], "expected a JSON object"),
        (["enqueue", "--tasks", TASKS, "no.such.task"], "not registered"),
        (["enqueue", "--tasks", TASKS, "mark", '{"wrong": 1}'], "do not fit"),
        (["enqueue", "--tasks", "nowhere:tasks", "echo"], "cannot import"),
        (["enqueue", "echo", "--delay", "soon"], "--delay"),
        (["enqueue", "--store", "redis://x", "echo"], "unknown store URL"),
        (["status", "--store", "sqlite:////no/such/dir/x.db"], "/no/such/dir"),
        (["retry", "abc"], "ID"),
        (["enqueue", "echo", "--from", "/no/such/file"], "No such file"),
        (["enqueue", "echo", "{}", "--from", "-"], "not both"),
        (["enqueue", "echo", "--key", "k", "--from", "-"], "--key"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    env = {"ASYNCWORKERS_STORE": f"sqlite:///{tmp_path / 'x.db'}"}
    one_error_line(cli(*args, env=env), expected)


def test_help_lists_the_store_commands() -> None:
    out = cli("--help").stdout
    for command in ("worker", "enqueue", "status", "retry"):
        assert command in out


def test_enqueue_help_gives_units_and_meanings() -> None:
    out = " ".join(cli("enqueue", "--help").stdout.split())
    assert "--delay SECONDS" in out
    assert "seconds from now" in out
    assert "--max-attempts N" in out
    assert "the first included" in out


class AwayStore:
    """A store whose database is away for the first tries (as a server being restarted)."""

    def __init__(self, tries: int, transient: bool) -> None:
        self.tries = tries
        self.transient = transient
        self.opened = False

    async def open(self) -> None:
        if self.tries:
            self.tries -= 1
            raise StoreUnavailable("cannot reach db.example:5432", transient=self.transient)
        self.opened = True


async def test_the_worker_waits_for_a_database_that_is_away(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from asyncworkers.cli._worker import reach

    away = AwayStore(tries=2, transient=True)
    assert await reach(away, first_wait=0.01)  # type: ignore[arg-type]
    assert away.opened
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert all("db.example:5432" in line and "trying again" in line for line in lines)
    mistake = AwayStore(tries=1, transient=False)
    with pytest.raises(StoreUnavailable):
        await reach(mistake, first_wait=0.01)  # type: ignore[arg-type]
