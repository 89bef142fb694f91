"""The operations endpoint of a real worker process (``asyncworkers worker --http``), read
with aiohttp's client: probes, Prometheus metrics, the dashboard's JSON and its admin POSTs.
Tests wait for events (rows in the store, marker files, an endpoint's answer), never for
time."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from _ops_support import get, ops_worker, poll_until, request
from _store_support import (
    PROCESS_GUARD,
    REPO,
    SQLiteFactory,
    StoreFactory,
    lines,
    query,
    wait_until,
)
from asyncworkers.store import Store

FAMILIES = {
    "asyncworkers_jobs",
    "asyncworkers_retries",
    "asyncworkers_jobs_in_flight",
    "asyncworkers_jobs_pending",
    "asyncworkers_job_run_seconds",
    "asyncworkers_job_wait_seconds",
    "asyncworkers_loop_lag_seconds",
    "asyncworkers_dead_letters",
    "asyncworkers_lease_losses",
    "asyncworkers_claim_duration_seconds",
    "asyncworkers_store_jobs",
    "asyncworkers_store_oldest_waiting_seconds",
    "asyncworkers_stuck_jobs",
    "asyncworkers_stuck_jobs_found",
}


STORE_DEAD = ("asyncworkers_store_jobs", (("queue", "default"), ("state", "dead")))


def enqueue(factory: StoreFactory, task: str, args: dict[str, Any], **options: Any) -> int:
    from _ops_tasks import tasks

    async def put(store: Store) -> int:
        return await tasks.enqueue(store, task, args, **options)

    return query(factory, put)  # type: ignore[no-any-return]


def counts(factory: StoreFactory) -> dict[str, int]:
    async def read(store: Store) -> dict[str, int]:
        return {str(k): v for k, v in (await store.counts()).items()}

    return query(factory, read)  # type: ignore[no-any-return]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics text, by name and sorted labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def families(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


def csrf_of(page: str) -> str:
    match = re.search(r"const CONFIG = (\{.*?\});", page)
    assert match, page[:500]
    config: dict[str, Any] = json.loads(match.group(1))
    return str(config["csrf"])


def test_worker_serves_probes_metrics_and_the_dashboard(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    fixed = tmp_path / "fixed"
    for i in range(12):
        enqueue(store_factory, "echo", {"value": i})
    dead = [enqueue(store_factory, "fail_unless", {"path": str(fixed)}) for _ in range(2)]
    with ops_worker(store_factory.url, tmp_path, "--http-admin") as worker:
        wait_until("the jobs to end", lambda: counts(store_factory)["succeeded"] == 12
                   and counts(store_factory)["dead"] == 2)  # fmt: skip

        status, text, _ = get(worker.url + "/healthz")
        assert status == 200
        assert json.loads(text)["status"] == "ok"
        status, text, _ = get(worker.url + "/readyz")
        assert (status, json.loads(text)) == (200, {"status": "ready"})

        # the counters count what the store recorded, once every outcome is written
        status, text = poll_until(
            "the outcomes in /metrics", worker.url + "/metrics",
            lambda s, t: samples(t).get(("asyncworkers_dead_letters_total", ())) == 2
            and samples(t).get(STORE_DEAD) == 2,  # the store is read in the background
        )  # fmt: skip
        assert families(text) >= FAMILIES, FAMILIES - families(text)
        got = samples(text)
        ok = ("asyncworkers_jobs_total",
              (("outcome", "succeeded"), ("queue", "default"), ("task", "echo")))  # fmt: skip
        assert got[ok] == 12
        died = ("asyncworkers_jobs_total",
                (("outcome", "dead"), ("queue", "default"), ("task", "fail_unless")))  # fmt: skip
        assert got[died] == 2
        assert got[("asyncworkers_job_run_seconds_count", ())] == 14
        assert (
            got[("asyncworkers_store_jobs", (("queue", "default"), ("state", "succeeded")))] == 12
        )
        assert got[("asyncworkers_store_jobs", (("queue", "default"), ("state", "dead")))] == 2
        assert got[("asyncworkers_lease_losses_total", ())] == 0

        # the dashboard and its JSON
        status, page, headers = get(worker.url + "/")
        assert status == 200
        assert "text/html" in headers["Content-Type"]
        assert "http://" not in page
        assert "https://" not in page
        status, text, _ = get(worker.url + "/api/status")
        view = json.loads(text)
        assert status == 200
        assert view["ready"]
        assert view["counters"]["succeeded"] == 12
        assert sorted(d["id"] for d in view["store"]["dead"]) == sorted(dead)
        assert "ValueError" in view["store"]["dead"][0]["error"]

        # admin POSTs: refused without the page's secret or from another origin; done with it
        retry = f"{worker.url}/api/jobs/{dead[0]}/retry"
        status, text, _ = request("POST", retry)
        assert status == 403
        assert "Csrf" in text
        secret = {"X-Asyncworkers-Csrf": csrf_of(page)}
        status, _, _ = request("POST", retry, headers={**secret, "Origin": "http://evil.test"})
        assert status == 403
        status, _, _ = request("POST", retry, headers={**secret, "Host": "evil.test"})
        assert status == 403
        fixed.touch()
        status, text, _ = request("POST", retry, headers=secret)
        assert (status, json.loads(text)) == (200, {"ok": True})
        wait_until("the retried job to succeed", lambda: counts(store_factory)["succeeded"] == 13)
        status, text, _ = request("POST", retry, headers=secret)  # it is no longer dead
        assert status == 409
        assert worker.stop() == 0
    assert "Traceback" not in worker.output()


def test_readyz_says_draining_while_the_worker_stops(tmp_path: Path) -> None:
    store_factory = SQLiteFactory(tmp_path)  # the store plays no part: one is enough
    marks, release = tmp_path / "marks", tmp_path / "release"
    enqueue(store_factory, "hold", {"path": str(marks), "release": str(release)})
    with ops_worker(store_factory.url, tmp_path) as worker:
        wait_until("the job to start", lambda: lines(marks))
        _, text, _ = get(worker.url + "/metrics")
        assert samples(text)[("asyncworkers_jobs_in_flight", ())] == 1
        worker.proc.send_signal(signal.SIGTERM)
        _status, text = poll_until(
            "/readyz to say draining", worker.url + "/readyz", lambda s, t: s == 503
        )
        assert "draining" in json.loads(text)["reason"]
        assert get(worker.url + "/healthz")[0] == 200  # alive: only not ready
        release.touch()
        assert worker.wait() == 0  # the drain let the job finish
    assert counts(store_factory)["succeeded"] == 1


def test_a_blocked_loop_turns_healthz_to_503(tmp_path: Path) -> None:
    store_factory = SQLiteFactory(tmp_path)  # the store plays no part: one is enough
    marks, release = tmp_path / "marks", tmp_path / "release"
    with ops_worker(store_factory.url, tmp_path, "--lag-threshold", "0.3") as worker:
        enqueue(store_factory, "block_loop", {"path": str(marks), "release": str(release)})
        wait_until("the job to block the loop", lambda: lines(marks))
        status, text = poll_until(
            "/healthz to fail", worker.url + "/healthz", lambda s, t: s == 503
        )
        assert json.loads(text)["status"] == "blocked"
        assert json.loads(text)["loop_lag_seconds"] > 0.3
        release.touch()
        poll_until("/healthz to pass again", worker.url + "/healthz", lambda s, t: s == 200)
        wait_until("the job to end", lambda: counts(store_factory)["succeeded"] == 1)
        status, text, _ = get(worker.url + "/metrics")
        assert status == 200
        assert worker.stop() == 0


def _status_watch(url: str, log: Path, *options: str) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "asyncworkers", "status", "--store", url, "--watch",
             "--interval", "0.05", *options],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip


def test_status_watch_follows_the_store_until_ctrl_c(tmp_path: Path) -> None:
    factory = SQLiteFactory(tmp_path)
    enqueue(factory, "echo", {"value": 1})
    log = tmp_path / "watch.jsonl"
    proc = _status_watch(factory.url, log, "--json")
    try:
        wait_until("a first reading", lambda: lines(log))
        enqueue(factory, "echo", {"value": 2})
        wait_until("a reading with two jobs",
                   lambda: json.loads(lines(log)[-1])["counts"]["queued"] == 2)  # fmt: skip
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=PROCESS_GUARD) == 0
    finally:
        proc.kill()
        proc.wait()

    shown = tmp_path / "watch.txt"
    proc = _status_watch(factory.url, shown)
    try:
        wait_until("the live table", lambda: "Jobs by state" in shown.read_text())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=PROCESS_GUARD) == 0
    finally:
        proc.kill()
        proc.wait()
    assert "Traceback" not in shown.read_text()
