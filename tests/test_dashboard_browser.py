"""The page in real headless Chromium against the real dashboard and broker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iotpipe.dashboard.api import LATE_AFTER_INTERVALS, LATE_SLACK_S
from tests import test_dashboard_support as support
from tests.conftest import Broker, Procs, wait_until
from tests.test_dashboard_api import Responder
from tests.test_dashboard_support import (
    Publisher,
    reading,
    start_dashboard,
)

publisher = support.publisher  # fixture

pytestmark = pytest.mark.browser
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def page() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
        context.set_default_timeout(90_000)  # a busy machine is slow, not wrong
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if error_here(m) else None)
        yield page
        browser.close()
        assert errors == [], errors


def error_here(message: Any) -> bool:
    """A console error that the page caused. Not: the EventSource's own retry while a test
    has stopped the server (reconnecting is the behaviour under test), nor Chromium aborting
    requests when the machine's interfaces change (another job's network namespace)."""
    if message.type != "error" or "ERR_NETWORK_CHANGED" in message.text:
        return False
    retry = "ERR_CONNECTION_REFUSED" in message.text
    return not (retry and str(message.location.get("url", "")).endswith("/api/stream"))


def _points(page: Any, metric: str, trace: int = 0) -> int:
    count: int = page.evaluate(
        "([m, i]) => { const d = document.getElementById('chart-' + m);"
        " return d && d.data && d.data[i] ? d.data[i].x.length : -1; }",
        [metric, trace],
    )
    return count


def test_the_chart_grows_live_without_a_reload(
    procs: Procs,
    broker: Broker,
    publisher: Publisher,
    tmp_path: Path,
    page: Any,
) -> None:
    dash = start_dashboard(procs, broker, tmp_path / "dash")
    t0 = time.time() - 30
    for i in range(5):
        publisher.reading(reading("board-1", i, t0 + i, temperature=20 + i))
    publisher.send("iotpipe/board-1/status", b"online", retain=True)
    page.goto(dash.url + "/")
    page.wait_for_function("() => document.querySelector('#conn').textContent === 'live'")
    page.wait_for_function(
        "() => { const d = document.getElementById('chart-temperature');"
        " return d && d.data && d.data[0].x.length === 5; }"
    )
    assert page.locator("#chart-temperature .main-svg").count() > 0
    card = page.locator("article.card[data-device='board-1']")
    assert card.locator(".status").text_content() == "online"
    page.evaluate("window.__marker = 'same page'")
    publisher.reading(reading("board-1", 5, time.time(), temperature=30.5))
    page.wait_for_function(
        "() => document.getElementById('chart-temperature').data[0].x.length === 6"
    )
    assert page.evaluate("window.__marker") == "same page"  # no reload happened
    assert "30.5" in (card.locator(".values").text_content() or "")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "the page scrolls sideways on a phone"


def test_hostile_text_from_devices_is_shown_as_text(
    procs: Procs,
    broker: Broker,
    publisher: Publisher,
    tmp_path: Path,
    page: Any,
) -> None:
    """A device id cannot hold '<' (it must be safe as a topic level; ingest rejects it),
    but the most HTML-like id allowed and a unit written as HTML must both show as text."""
    dash = start_dashboard(procs, broker, tmp_path / "dash")
    hostile = "x.-img_src-x-onerror-alert.1"
    meta = b'{"units": {"temperature": "<i>C</i>"}, "fw": "<script>", "board": "b"}'
    publisher.send(f"iotpipe/{hostile}/meta", meta, retain=True)
    publisher.send("iotpipe/<img src=x>/telemetry", b"{}")
    page.goto(dash.url + "/")
    page.wait_for_function("() => document.querySelector('#conn').textContent === 'live'")
    publisher.reading(reading(hostile, 1, time.time(), temperature=1.5))
    page.wait_for_selector("article.card dd")
    card = page.locator("article.card")
    assert card.count() == 1
    assert card.locator("h2.name").text_content() == hostile
    assert card.locator("dd").first.text_content() == "1.5 <i>C</i>"
    assert card.locator("i, img, script").count() == 0
    assert 'reason="bad_topic"} 1' in dash.get("/metrics")[1]


def _live(page: Any) -> None:
    page.wait_for_function("() => document.querySelector('#conn').textContent === 'live'")


def test_read_now_shows_the_answer_and_an_alert_shows_on_the_page(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path, page: Any
) -> None:
    rules = tmp_path / "alerts.toml"
    rules.write_text('[[rule]]\nname = "too hot"\nmetric = "temperature"\nabove = 30\n')
    dash = start_dashboard(procs, broker, tmp_path / "dash", "--alerts", str(rules))
    responder = Responder(broker)
    try:
        publisher.reading(reading("board-r", 1, time.time(), temperature=20.0))
        page.goto(f"{dash.url}/login?token={dash.token}")  # the link the dashboard logs
        _live(page)
        card = page.locator("article.card[data-device='board-r']")
        card.locator("button.read-now").click()
        page.wait_for_function(
            "() => /ms\\)$/.test(document.querySelector('.card .answer').textContent)"
        )
        answer = card.locator(".answer").text_content() or ""
        assert '"cmd":"read"' in answer and "ms)" in answer
    finally:
        responder.close()
    publisher.reading(reading("board-r", 2, time.time(), temperature=31.0))
    page.wait_for_selector("#alert-list li")
    assert "too hot" in (page.locator("#alert-list li").first.text_content() or "")


def test_range_buttons_and_zoom_ask_for_the_right_window(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path, page: Any
) -> None:
    dash = start_dashboard(procs, broker, tmp_path / "dash")
    now = time.time()
    for i in range(20):
        publisher.reading(reading("board-a", i, now - 3000 + i * 100, temperature=20 + i))
        publisher.reading(reading("board-b", i, now - 3000 + i * 100, temperature=10 + i))
    wait_until(lambda: len(dash.get("/api/devices")[1]) == 2, 10, "both boards")
    page.goto(dash.url + "/")
    _live(page)
    page.wait_for_function("() => document.getElementById('chart-temperature')?.data?.length === 2")
    names = page.evaluate(
        "() => document.getElementById('chart-temperature').data.map(t => t.name)"
    )
    assert sorted(names) == ["board-a", "board-b"]  # several devices on one chart
    with page.expect_request(lambda r: "/api/charts/temperature" in r.url) as day:
        page.locator("#ranges button", has_text="24 h").click()
    since = float(day.value.url.split("since=")[1].split("&")[0])
    assert abs(since - (time.time() - 86400)) < 60
    with page.expect_request(lambda r: "until=" in r.url) as zoom:
        page.evaluate(
            "([a, b]) => Plotly.relayout(document.getElementById('chart-temperature'),"
            " {'xaxis.range[0]': a, 'xaxis.range[1]': b})",
            [_plot_time(now - 2000), _plot_time(now - 1000)],
        )
    query = zoom.value.url
    assert abs(float(query.split("since=")[1].split("&")[0]) - (now - 2000)) < 1
    assert abs(float(query.split("until=")[1].split("&")[0]) - (now - 1000)) < 1


def test_the_page_reconnects_by_itself_after_a_server_restart(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path, page: Any
) -> None:
    dash = start_dashboard(procs, broker, tmp_path / "dash")
    publisher.reading(reading("board-x", 1, time.time() - 5, temperature=20.0))
    page.goto(dash.url + "/")
    _live(page)
    page.wait_for_function("() => document.getElementById('chart-temperature')?.data?.length")
    dash.proc.stop()
    page.wait_for_function("() => document.querySelector('#conn').textContent !== 'live'")
    start_dashboard(procs, broker, tmp_path / "dash", name="again", port=dash.port)
    _live(page)
    publisher.reading(reading("board-x", 2, time.time(), temperature=21.0))
    page.wait_for_function(
        "() => document.getElementById('chart-temperature').data[0].x.length === 2"
    )


def _plot_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def test_a_card_turns_late_by_itself_when_readings_stop_and_clears_on_the_next(
    procs: Procs,
    broker: Broker,
    publisher: Publisher,
    tmp_path: Path,
    page: Any,
) -> None:
    """Whatever the machine's speed: "not late" counts only when the page was looked at
    while its reading was younger than the limit (a slow page gets a fresh reading and
    another look), and "late" must not come before the limit has passed."""
    dash = start_dashboard(procs, broker, tmp_path / "dash")
    meta = {"device": "sleepy", "boot": "0a1b2c3d", "units": {"temperature": "°C"}}
    publisher.send("iotpipe/sleepy/meta", json.dumps({**meta, "interval_ms": 1000}).encode(), True)
    publisher.send("iotpipe/sleepy/status", b"online", retain=True)
    late_after = LATE_AFTER_INTERVALS * 1.0 + LATE_SLACK_S  # 3 intervals of 1 s, + slack
    card = "article.card[data-device='sleepy']"
    age = page.locator(f"{card} .age")
    page.goto(dash.url + "/")
    seen_fresh = False
    for seq in range(10):
        sent = time.time()
        value = 17.25 + seq
        publisher.reading(reading("sleepy", seq, sent, temperature=value))
        page.wait_for_function(
            "([sel, v]) => (document.querySelector(sel)?.textContent || '').includes(v)",
            arg=[f"{card} .values", f"{value:g}"],
        )
        late = "late" in (age.get_attribute("class") or "")
        if time.time() - sent < late_after - 1.0:
            assert not late, (
                f"late {time.time() - sent:.1f} s after a reading: {age.text_content()}"
            )
            seen_fresh = True
            break
    assert seen_fresh, f"the page never showed a reading within {late_after - 1:.0f} s of it"
    page.wait_for_function(
        "(sel) => document.querySelector(sel).classList.contains('late')", arg=f"{card} .age"
    )
    assert time.time() - sent > late_after, "late before three intervals and the slack passed"
    assert "a reading every 1 s expected" in (age.text_content() or "")
    publisher.reading(reading("sleepy", seq + 1, time.time(), temperature=30.0))
    page.wait_for_function(
        "(sel) => !document.querySelector(sel).classList.contains('late')", arg=f"{card} .age"
    )
