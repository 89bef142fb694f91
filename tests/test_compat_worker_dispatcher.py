"""asyncworkers.compat.worker_dispatcher on worker-dispatcher's own README examples.

The HTTP examples run against a real HTTP server on 127.0.0.1 (tests/_http_server.py, in
a subprocess), with ``requests`` as in the README; the process example runs as a script of
its own, as a user would run it. Sizes are scaled down (fewer tasks, shorter intervals,
less CPU work), the code is the README's with the import switched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from asyncworkers.compat import worker_dispatcher
from asyncworkers.compat.worker_dispatcher import _frequency_offsets, _merge

HERE = Path(__file__).parent
LOG_KEYS = {"task_id", "started_at", "ended_at", "duration", "result", "metadata"}
TPS_KEYS = {"tps", "started_at", "ended_at", "duration", "metrics", "count", "peak"}
# Bounds a child process, never a figure about speed.
CHILD_TIMEOUT = 120


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_http_server.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    port = int(proc.stdout.readline())
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_script(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "main.py"
    script.write_text(textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )


# -- README: "Use 20 theads concurrently to dispatch tasks for HTTP reqeusts" ---------------


def test_readme_http_requests_with_20_threads(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def each_task(id: int, config: Any, task: Any, metadata: Any) -> Any:
        response = requests.get(config["my_endpoint"] + task)
        return response  # noqa: RET504 - the README's code, as it is

    orders = ["ORD_AH001", "ORD_KL502", "ORD_GR393"] * 10
    responses = worker_dispatcher.start(
        {
            "task": {
                "list": orders,
                "function": each_task,
                "config": {"my_endpoint": server + "/order-handler/"},
            },
            "worker": {
                "number": 20,
            },
        }
    )
    assert isinstance(responses, list)
    assert [r.status_code for r in responses] == [200] * 30
    assert [r.text for r in responses] == orders  # in task order
    out = capsys.readouterr().out
    assert "Completed Tasks Count: 30" in out
    assert "Total Concurrency: 20 Active Worker(s)" in out
    logs = worker_dispatcher.get_logs()
    assert [log["task_id"] for log in logs] == list(range(1, 31))
    assert all(set(log) == LOG_KEYS for log in logs)
    assert [log["result"] for log in logs] == responses
    info = worker_dispatcher.get_result_info()
    assert set(info) == {"started_at", "ended_at", "duration"}
    assert info["duration"] == pytest.approx(info["ended_at"] - info["started_at"])
    tps = worker_dispatcher.get_tps()
    assert isinstance(tps, dict)
    assert set(tps) == TPS_KEYS
    assert tps["count"] == {"success": 30, "total": 30, "start": 30, "end": 30, "invalidity": 30}
    assert tps["tps"] > 0


# -- README: "Utilizes all CPU cores on the machine to compute tasks" ----------------------


def test_readme_processing_example_runs_as_a_script(tmp_path: Path) -> None:
    done = run_script(
        tmp_path,
        """
        import json
        from asyncworkers.compat import worker_dispatcher

        def each_task(id: int, config, task, metadata):
            result = sum(id * i for i in range(10**5))
            return result

        if __name__ == '__main__':
            results = worker_dispatcher.start({
                'task': {
                    'list': 10,
                    'function': each_task,
                },
                'worker': {
                    'use_processing': True
                }
            })
            print(json.dumps(results))
        """,
    )
    assert done.returncode == 0, done.stderr
    expected = [sum(task_id * i for i in range(10**5)) for task_id in range(1, 11)]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == expected
    assert "Execution Type: Processing" in done.stdout


def test_a_processing_script_without_a_main_guard_does_not_recurse(tmp_path: Path) -> None:
    # Each worker process re-runs the script as __mp_main__; start() must return False there.
    done = run_script(
        tmp_path,
        """
        import os
        from asyncworkers.compat import worker_dispatcher

        def each_task(id, config, task, metadata):
            return os.getpid()

        results = worker_dispatcher.start({
            'task': {'list': 4, 'function': each_task},
            'worker': {'number': 2, 'use_processing': True},
            'verbose': False,
        })
        print("results", results, os.getpid())
        """,
    )
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines() if line.startswith("results")]
    assert len(lines) == 1  # printed once: by the parent
    parent = lines[0][-1]
    assert parent not in lines[0][1:-1]  # the tasks ran in other processes


# -- README: "Stress Test" (10 requests per second, scaled to 10 per 0.2 s) ----------------


def test_readme_stress_test_in_frequency_mode(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def each_task(id: Any, config: Any, task: Any, metadata: Any) -> Any:
        response = None
        try:
            response = requests.get(config["my_endpoint"], timeout=(5, 10))
        except requests.exceptions.RequestException as e:
            print("An error occurred:", e)
        return response

    responses = worker_dispatcher.start(
        {
            "task": {
                "list": 30,
                "function": each_task,
                "config": {"my_endpoint": server + "/api"},
            },
            "worker": {
                "number": 10,
                "frequency_mode": {
                    "enabled": True,
                    "interval": 0.2,
                },
            },
        }
    )
    print(worker_dispatcher.get_logs())
    print(worker_dispatcher.get_tps())
    assert isinstance(responses, list)
    assert [r.status_code for r in responses] == [200] * 30
    assert "Dispatch Mode: Frequency Mode" in capsys.readouterr().out
    begin = worker_dispatcher.get_result_info()["started_at"]
    for log in worker_dispatcher.get_logs():
        batch = (log["task_id"] - 1) // 10  # 10 tasks every 0.2 s, never before their time
        assert log["started_at"] - begin >= batch * 0.2 - 0.005
    tps = worker_dispatcher.get_tps()
    assert isinstance(tps, dict)
    assert tps["count"]["success"] == 30


# -- README: "Background Execution" (worker_dispatcher.print) ------------------------------


def test_readme_background_execution_prints_with_flush(capsys: pytest.CaptureFixture[str]) -> None:
    def each_task(id: Any, config: Any, task: Any, metadata: Any) -> Any:
        # Print immediately to file (stdout is flushed)
        if id % 10 == 0:
            worker_dispatcher.print(f"TaskId: {id}")
        return True

    responses = worker_dispatcher.start(
        {
            "task": {
                "list": 600,
                "function": each_task,
            },
            "verbose": False,
        }
    )
    assert responses == [True] * 600
    printed = sorted(
        int(line.split()[-1]) for line in capsys.readouterr().out.splitlines() if "TaskId" in line
    )
    assert printed == list(range(10, 601, 10))


# -- callbacks, failures, runtime ----------------------------------------------------------


def test_on_done_and_on_all_done_get_keywords_and_the_dict_log(server: str) -> None:
    seen: list[tuple[int, Any]] = []

    def each_task(id: Any, config: Any, task: Any, metadata: Any) -> Any:
        metadata["path"] = task
        return requests.get(config["base"] + task)

    def on_done(id: Any, config: Any, result: Any, log: Any) -> Any:
        assert set(log) == LOG_KEYS
        assert log["metadata"] == {"path": log["result"].url.removeprefix(config["base"])}
        log["extra"] = "kept"  # the same dict ends up in get_logs()
        return result.status_code == 200

    def on_all_done(id: Any, config: Any, result: Any, log: Any) -> Any:
        seen.append((id, result))
        return result

    results = worker_dispatcher.start(
        {
            "task": {
                "list": ["/api", "/fail", "/api", "/missing"],
                "function": each_task,
                "config": {"base": server},
                "callback": {"on_done": on_done, "on_all_done": on_all_done},
            },
            "worker": {"number": 2},
            "verbose": False,
        }
    )
    assert results == [True, False, True, False]
    assert seen == [(1, True), (2, False), (3, True), (4, False)]  # after all, in order
    assert all(log["extra"] == "kept" for log in worker_dispatcher.get_logs())
    tps = worker_dispatcher.get_tps()
    assert isinstance(tps, dict)
    assert (tps["count"]["success"], tps["count"]["total"]) == (2, 4)


def test_http_errors_and_exceptions_count_as_failures_in_get_tps(server: str) -> None:
    def each_task(id: Any, config: Any, task: Any, metadata: Any) -> Any:
        if task == "raise":
            raise ValueError("task bug")
        return requests.get(server + task)

    results = worker_dispatcher.start(
        {
            "task": {"list": ["/api", "/fail", "raise"], "function": each_task},
            "verbose": False,
        }
    )
    assert isinstance(results, list)
    assert isinstance(results[2], ValueError)  # the program goes on; the task failed
    tps = worker_dispatcher.get_tps()
    assert isinstance(tps, dict)
    assert (tps["count"]["success"], tps["count"]["total"]) == (1, 3)


def test_runtime_stops_dispatching_in_frequency_mode(capsys: pytest.CaptureFixture[str]) -> None:
    def each_task(id: Any, config: Any, task: Any, metadata: Any) -> Any:
        return id

    results = worker_dispatcher.start(
        {
            "task": {"list": 50, "function": each_task},
            "worker": {"number": 5, "frequency_mode": {"enabled": True, "interval": 0.1}},
            "runtime": 0.25,
        }
    )
    # Batches at 0, 0.1, 0.2 s may start before 0.25 s; the one at 0.3 s cannot.
    assert isinstance(results, list)
    assert 5 <= len(results) <= 15
    assert results == list(range(1, len(results) + 1))
    out = capsys.readouterr().out
    assert f"Undispatched Tasks Count: {50 - len(results)}" in out
    assert "Runtime: 0.25 sec" in out


async def test_an_async_task_function_runs_on_the_loop_too() -> None:
    import asyncio

    async def each_task(id: Any, config: Any, task: Any, metadata: Any) -> Any:
        await asyncio.sleep(0)
        return id * 2

    config = {"task": {"list": 3, "function": each_task}, "verbose": False}
    assert await asyncio.to_thread(worker_dispatcher.start, config) == [2, 4, 6]
    # Called right here, with this thread's loop running (a notebook): it blocks, as
    # worker-dispatcher does, and works.
    assert worker_dispatcher.start(config) == [2, 4, 6]


# -- configuration and get_tps odds and ends -----------------------------------------------


def test_frequency_batches_grow_by_accumulated_workers_and_never_vanish() -> None:
    assert _frequency_offsets(10, 2, 1.0, 1) == [0, 0, 1, 1, 1, 2, 2, 2, 2, 3]
    assert _frequency_offsets(4, 2, 0.5, -5) == [0, 0, 0.5, 1.0]  # at least one a batch


def test_config_merges_into_the_defaults_key_by_key() -> None:
    merged = _merge(worker_dispatcher.default_config, {"worker": {"number": 3}, "x": 1})
    assert merged["worker"]["number"] == 3
    assert merged["worker"]["frequency_mode"]["interval"] == 1  # default kept
    assert merged["x"] == 1
    assert worker_dispatcher.default_config["worker"]["number"] == os.cpu_count()


def test_get_tps_takes_logs_and_refuses_what_is_not_a_list() -> None:
    logs: list[dict[str, Any]] = [
        {"task_id": 1, "started_at": 100.0, "ended_at": 100.5, "duration": 0.5, "result": True},
        {"task_id": 2, "started_at": 100.2, "ended_at": 101.0, "duration": 0.8, "result": False},
        {"task_id": 3, "started_at": 101.0, "ended_at": 102.0, "duration": 1.0, "result": "x"},
    ]
    tps = worker_dispatcher.get_tps(logs=logs, display_intervals=True)
    assert isinstance(tps, dict)
    assert tps["count"] == {"success": 2, "total": 3, "start": 3, "end": 3, "invalidity": 3}
    assert tps["tps"] == 1.0  # 2 successes over 2 s
    assert tps["intervals"]
    assert worker_dispatcher.get_tps(logs="nope") is False  # type: ignore[arg-type]
