"""The page's alerts in real headless Chromium: a firing alert at the top, a browser
notification once allowed, acknowledge and silence through the logged-in session."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import test_dashboard_support as support
from tests.conftest import Broker, Procs
from tests.test_dashboard_browser import ARGS, CHROMIUM
from tests.test_dashboard_support import Publisher, reading, start_dashboard

publisher = support.publisher  # fixture
pytestmark = pytest.mark.browser

# Records each notification the page raises, then lets the browser's own one show.
RECORD_NOTIFICATIONS = """
const Real = window.Notification;
window.shownNotifications = [];
class Recorded extends Real {
  constructor(title, options) {
    super(title, options);
    window.shownNotifications.push([title, options && options.body]);
  }
}
window.Notification = Recorded;
"""


@pytest.fixture
def browser_context() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser.new_context(viewport={"width": 390, "height": 844})
        browser.close()


def test_a_firing_alert_is_on_top_notifies_the_browser_and_can_be_acknowledged(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path, browser_context: Any
) -> None:
    rules = tmp_path / "alerts.toml"
    rules.write_text('[[rule]]\nname = "too hot"\nmetric = "temperature"\nabove = 30\n')
    dash = start_dashboard(procs, broker, tmp_path / "dash", "--alerts", str(rules))
    browser_context.grant_permissions(["notifications"], origin=dash.url)
    browser_context.add_init_script(RECORD_NOTIFICATIONS)
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    publisher.reading(reading("board-h", 1, time.time(), temperature=20.0))
    page.goto(f"{dash.url}/login?token={dash.token}")
    page.wait_for_function("() => document.querySelector('#conn').textContent === 'live'")
    publisher.reading(reading("board-h", 2, time.time(), temperature=31.5))

    row = page.locator("#alerts-firing li.firing")
    row.wait_for(timeout=60_000)
    assert "too hot · board-h · temperature · 31.5" in (row.text_content() or "")
    on_top = page.evaluate(
        "() => !!(document.getElementById('alerts-firing').compareDocumentPosition("
        "document.getElementById('cards')) & Node.DOCUMENT_POSITION_FOLLOWING)"
    )
    assert on_top
    page.wait_for_function("() => window.shownNotifications.length >= 1", timeout=60_000)
    title, body = page.evaluate("() => window.shownNotifications[0]")
    assert title == "[firing] too hot" and "board-h temperature 31.5" in body

    row.get_by_role("button", name="acknowledge").click()
    page.locator("#alerts-firing .acked").wait_for(timeout=60_000)
    assert dash.get("/api/alerts/firing")[1]["firing"][0]["acked"] is True
    page.locator("#alerts-firing li.firing").get_by_role("button", name="silence 1 h").click()
    page.locator("#alerts-firing .silenced").wait_for(timeout=60_000)
    until = dash.get("/api/alerts/firing")[1]["firing"][0]["silenced_until"]
    assert 3500 < until - time.time() <= 3600
    assert errors == [], errors
