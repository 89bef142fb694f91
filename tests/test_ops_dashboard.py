"""The dashboard in a real browser: headless Debian Chromium through Selenium, against a real
worker process. The page shows the counts change as jobs run, and its Retry button brings a
dead job back to life. A screenshot is kept in the test's temporary folder (never the repo).

Needs ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); FAILS, never skips,
without them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from _ops_support import ops_worker
from _store_support import PROCESS_GUARD, SQLiteFactory, query, wait_until
from asyncworkers.store import Store

_INSTALL = "apt-get install -y chromium chromium-driver"


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"none of {names} is installed: the dashboard test needs `{_INSTALL}`",
                pytrace=False)  # fmt: skip


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium", "chromium-browser")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1200,1600"):  # fmt: skip
        options.add_argument(flag)
    # The Debian driver, by path: Selenium must never fetch a driver from the internet.
    service = Service(executable_path=_binary("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def enqueue(factory: SQLiteFactory, task: str, args: dict[str, Any]) -> int:
    from _ops_tasks import tasks

    async def put(store: Store) -> int:
        return await tasks.enqueue(store, task, args)

    return query(factory, put)  # type: ignore[no-any-return]


def state_count(driver: webdriver.Chrome, state: str) -> int:
    cells = driver.find_elements(By.CSS_SELECTOR, f"#queue-all td[data-state='{state}']")
    return int(cells[0].text) if cells and cells[0].text.isdigit() else -1


def test_the_dashboard_shows_jobs_and_retries_a_dead_one(
    browser: webdriver.Chrome, tmp_path: Path
) -> None:
    factory = SQLiteFactory(tmp_path)
    fixed = tmp_path / "fixed"
    dead_id = enqueue(factory, "fail_unless", {"path": str(fixed)})
    for i in range(3):
        enqueue(factory, "echo", {"value": i})
    with ops_worker(factory.url, tmp_path, "--http-admin") as worker:
        browser.get(worker.url + "/")
        # a poll may redraw a table between a lookup and its use: look again
        wait = WebDriverWait(browser, PROCESS_GUARD, poll_frequency=0.1,
                             ignored_exceptions=[StaleElementReferenceException])  # fmt: skip
        wait.until(lambda d: state_count(d, "succeeded") == 3 and state_count(d, "dead") == 1)
        assert "not ready" not in browser.find_element(By.ID, "ready").text

        for i in range(4):  # more jobs run: the page follows
            enqueue(factory, "echo", {"value": i})
        wait.until(lambda d: state_count(d, "succeeded") == 7)

        row = f"#dead tr[data-id='{dead_id}']"
        assert "ValueError" in browser.find_element(By.CSS_SELECTOR, row).text
        fixed.touch()
        browser.find_element(By.CSS_SELECTOR, f"{row} button.retry").click()
        wait.until(lambda d: state_count(d, "succeeded") == 8 and state_count(d, "dead") == 0)
        assert "retry of job" in browser.find_element(By.ID, "message").text
        browser.save_screenshot(str(tmp_path / "dashboard.png"))
        assert (tmp_path / "dashboard.png").stat().st_size > 0
        assert not browser.find_elements(By.CSS_SELECTOR, "#dead tbody tr")
        wait_until("the worker to stop", lambda: worker.stop() == 0)
