"""The overview page in a real headless browser (Debian's chromium, driven through
chromium-driver by Selenium), against the app served as the host serves it."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support.durable_double import DurableDouble, ago
from tests.support.web_front import WebFront

pytestmark = pytest.mark.browser

KEY = "page-test-function-key"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: Where to keep the page's screenshot (docs/operate.md shows it), when set.
SCREENSHOT = os.environ.get("SINGLETON_PAGE_SCREENSHOT")


@pytest.fixture
def front(durable: DurableDouble, app_env: str) -> Iterator[WebFront]:
    served = WebFront(durable.starter(), KEY).start()
    yield served
    served.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    assert not missing, f"{missing} missing: scripts/test.sh installs Debian's chromium"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        # Without these, chromium calls out to the network at start (refused here).
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,800",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def job_status(processed: int, total: int) -> dict:
    return {"pass": 1, "processed": processed, "total": total, "run": None, "buffered": None}


def wait(browser: Any, condition: Any, seconds: float = 15) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, seconds, poll_frequency=0.1).until(condition)


#: An instance's row as the page shows it, read in one step (the page redraws its
#: tables on every refresh, so elements found earlier go stale).
_READ_ROW = """
const row = document.querySelector('tr[data-instance="' + arguments[0] + '"]');
if (!row) return null;
const bar = row.querySelector('[role=progressbar]');
const stuck = row.querySelector('.stuck');
return {
  status: row.dataset.status, stuck: row.dataset.stuck || null, text: row.innerText,
  stuckText: stuck ? stuck.textContent : null,
  progress: bar ? bar.getAttribute('aria-valuenow') : null,
  buttons: Array.from(row.querySelectorAll('button')).map(b => b.dataset.action),
};
"""


def row(browser: Any, instance_id: str) -> Any:
    """The row of ``instance_id`` (a dict), or None while the page does not show it."""
    return browser.execute_script(_READ_ROW, instance_id)


def click(browser: Any, instance_id: str, action: str) -> None:
    """Click the row's button, finding it again if a refresh redrew it meanwhile."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    selector = f'tr[data-instance="{instance_id}"] [data-action={action}]'

    def clicked(b: Any) -> bool:
        try:
            b.find_element(By.CSS_SELECTOR, selector).click()
            return True
        except StaleElementReferenceException:
            return False

    wait(browser, clicked)


def test_the_page_lists_marks_moves_and_stops(front, durable, browser, monkeypatch) -> None:
    from selenium.webdriver.support import expected_conditions as seen

    durable.reset(stop_delay=0.2)
    monkeypatch.setenv("SINGLETON_SCHEDULE", "0 0 2 * * *")
    monkeypatch.setenv("SINGLETON_SCHEDULE_ENABLED", "true")
    monkeypatch.setenv("SINGLETON_SCHEDULE_INSTANCE_ID", "nightly-import")
    durable.put("nightly-import", "Running", created=ago(120), custom_status=job_status(1, 10))
    durable.put("stuck-report", "Pending", created=ago(3600))
    durable.put("yesterday", "Completed", created=ago(86400))
    browser.get(f"{front.origin}/api/singletons?code={KEY}&refresh=1")

    # The list renders: every instance, the stuck one marked, the finished one without buttons.
    wait(browser, lambda b: row(b, "nightly-import") and row(b, "yesterday"))
    stuck = wait(browser, lambda b: row(b, "stuck-report"))
    assert stuck["stuck"] == "true" and stuck["status"] == "Pending"
    assert stuck["stuckText"].startswith("stuck: Pending 3")
    assert row(browser, "nightly-import")["stuck"] is None
    assert row(browser, "nightly-import")["buttons"] == ["stop", "terminate"]
    assert row(browser, "yesterday")["buttons"] == []

    # The progress bar moves as the job reports progress.
    assert wait(browser, lambda b: row(b, "nightly-import")["progress"] == "1")
    durable.instances["nightly-import"].custom_status = job_status(6, 10)
    assert wait(browser, lambda b: row(b, "nightly-import")["progress"] == "6")
    assert "6 / 10" in row(browser, "nightly-import")["text"]
    if SCREENSHOT:
        browser.save_screenshot(SCREENSHOT)

    # Stop asks for confirmation, then ends the job.
    click(browser, "nightly-import", "stop")
    alert = wait(browser, seen.alert_is_present())
    assert "Stop nightly-import" in alert.text
    alert.accept()
    wait(browser, lambda b: row(b, "nightly-import")["status"] == "Completed")
    assert [(i, e) for i, e, _ in durable.events] == [("nightly-import", "Stop")]


def test_terminate_dismissed_changes_nothing(front, durable, browser) -> None:
    from selenium.webdriver.support import expected_conditions as seen

    durable.put("keep-me", "Running")
    browser.get(f"{front.origin}/api/singletons?code={KEY}&refresh=1")
    wait(browser, lambda b: row(b, "keep-me"))
    click(browser, "keep-me", "terminate")
    wait(browser, seen.alert_is_present()).dismiss()
    assert durable.terminations == [] and durable.instances["keep-me"].status == "Running"


def test_the_page_shows_the_schedule_and_its_next_tick(front, durable, browser, monkeypatch):
    from selenium.webdriver.common.by import By

    monkeypatch.setenv("SINGLETON_SCHEDULE", "0 */15 * * * *")
    monkeypatch.setenv("SINGLETON_SCHEDULE_ENABLED", "true")
    monkeypatch.setenv("SINGLETON_SCHEDULE_INSTANCE_ID", "scheduled-job")
    browser.get(f"{front.origin}/api/singletons?code={KEY}")
    schedule = wait(
        browser,
        lambda b: b.find_elements(By.CSS_SELECTOR, 'tr[data-schedule="SINGLETON_SCHEDULE"]'),
    )[0]
    cells = [c.text for c in schedule.find_elements(By.TAG_NAME, "td")]
    assert cells[1:4] == ["SingletonOrchestrator", "scheduled-job", "yes"]
    tick = datetime.datetime.strptime(cells[4], "%Y-%m-%dT%H:%M:%SZ")
    assert tick.minute % 15 == 0 and tick.second == 0


_READ_KEY = """
const row = document.querySelector('tr[data-key="' + arguments[0] + '"]');
return row ? Array.from(row.querySelectorAll('td')).map(td => td.textContent) : null;
"""


def test_the_page_shows_each_key_with_its_slots_and_its_queue(front, durable, browser) -> None:
    for _ in range(4):  # SingletonOrchestrator's limit is 3 per key: one waits
        started = urllib.request.Request(
            f"{front.origin}/api/limits/SingletonOrchestrator/tenant-7?code={KEY}",
            data=b'{"items": [1]}',
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(started, timeout=10) as answer:
            assert answer.status == 202
    browser.get(f"{front.origin}/api/singletons?code={KEY}&refresh=1")
    cells = wait(browser, lambda b: b.execute_script(_READ_KEY, "tenant-7"))
    assert cells[:3] == ["tenant-7", "tenant-7~0, tenant-7~1, tenant-7~2", "1"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", cells[3])  # when it queued


def test_the_page_loads_nothing_from_elsewhere_and_needs_the_key(front, durable) -> None:
    with urllib.request.urlopen(f"{front.origin}/api/singletons?code={KEY}", timeout=10) as page:
        html = page.read().decode()
        policy = page.headers["Content-Security-Policy"]
        assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert KEY not in html
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{front.origin}/api/singletons", timeout=10)
    assert refused.value.code == 401
