"""The live page's behaviour in real headless Chromium: batched drawing, a hidden tab, dark
mode, a phone, the reader's time zone. Nothing here is timed (benchmarks/browser_bench.py
measures); every wait polls for what a reader would see."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests import test_dashboard_support as support
from tests.conftest import Broker, Procs, wait_until
from tests.test_dashboard_browser import ARGS, CHROMIUM, error_here
from tests.test_dashboard_support import Publisher, RunningDashboard, reading, start_dashboard

publisher = support.publisher  # fixture

pytestmark = pytest.mark.browser
ZONE = "America/New_York"  # not the machine's zone, whatever that is

OpenPage = Callable[..., Any]


@pytest.fixture
def open_page() -> Iterator[OpenPage]:
    """``open_page(width=…, scheme=…)``: a fresh browser context in ZONE; page errors and
    console errors fail the test."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)

        def make(width: int = 1280, scheme: str = "light") -> Any:
            context = browser.new_context(
                viewport={"width": width, "height": 900}, color_scheme=scheme, timezone_id=ZONE
            )
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if error_here(m) else None)
            return page

        yield make
        browser.close()
    assert errors == [], errors


def _live(page: Any, dash: RunningDashboard) -> None:
    page.goto(dash.url + "/")
    page.wait_for_function("() => document.querySelector('#conn').textContent === 'live'")
    page.wait_for_function("() => document.getElementById('chart-temperature')?.data?.length")


def _trace(page: Any, device: str) -> dict[str, list[float]]:
    trace: dict[str, list[float]] = page.evaluate(
        "(device) => { const t = document.getElementById('chart-temperature').data"
        ".find((t) => t.meta.device === device); return {x: t.x, y: t.y}; }",
        device,
    )
    return trace


def _dashboard_with(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path, first: Any
) -> RunningDashboard:
    """A dashboard that has stored the reading ``first``."""
    dash = start_dashboard(procs, broker, tmp_path / "dash")
    publisher.reading(first)
    wait_until(lambda: dash.get("/api/devices")[1], 10, "the first reading stored")
    return dash


def test_batched_drawing_keeps_every_reading_and_shows_the_last(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path, open_page: OpenPage
) -> None:
    t0 = time.time() - 600
    dash = _dashboard_with(
        procs, broker, publisher, tmp_path, reading("burst", 0, t0, temperature=0.0)
    )
    page = open_page()
    _live(page, dash)
    sent = [round(0.25 * i, 2) for i in range(1, 301)]
    for i, value in enumerate(sent, start=1):  # far faster than the page draws
        publisher.reading(reading("burst", i, t0 + i, temperature=value))
    page.wait_for_function(
        f"() => document.getElementById('chart-temperature').data[0].y.length === {len(sent) + 1}",
        timeout=60_000,
    )
    assert _trace(page, "burst")["y"] == [0.0, *sent]  # every reading, in order, none twice
    card = page.locator("article.card[data-device='burst'] dd")
    wait_until(lambda: card.first.text_content() == "75", 30, "the card's last value")


def test_a_reading_stored_while_the_page_opens_its_stream_is_shown(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path, open_page: OpenPage
) -> None:
    # The stream is held back by the test; a reading is stored meanwhile. A page that
    # loaded its data before its stream was open would never show it (nothing comes again
    # for a board asleep), so it must load once the stream is open.
    t0 = time.time() - 60
    dash = _dashboard_with(
        procs, broker, publisher, tmp_path, reading("sleepy", 0, t0, temperature=1.5)
    )
    page = open_page()
    held: list[Any] = []
    finished: list[str] = []
    page.route("**/api/stream", lambda route: held.append(route))
    page.on("requestfinished", lambda request: finished.append(request.url))
    page.goto(dash.url + "/")
    page.wait_for_function("() => document.querySelector('#conn') !== null")
    # A page that loads first has its answers within seconds; one that waits never asks.
    deadline = time.monotonic() + 5
    while not any("/api/devices" in url for url in finished) and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert len(held) == 1, "the page opened one stream"
    publisher.reading(reading("sleepy", 1, t0 + 1, temperature=2.5))
    wait_until(lambda: "2.5" in str(dash.get("/api/devices")[1]), 10, "the second stored")
    held[0].continue_()
    page.wait_for_function("() => document.querySelector('#conn').textContent === 'live'")
    values = page.locator("article.card[data-device='sleepy'] .values")
    wait_until(lambda: "2.5" in (values.text_content() or ""), 30, "the second on the card")


def test_the_page_asks_no_other_host_for_anything(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path, open_page: OpenPage
) -> None:
    # Users run it offline: every asset, the live stream and the charts' own parts (the
    # mode bar on hover, a range change) come from the dashboard, and nothing else is asked.
    # (The page's Content-Security-Policy refuses other hosts too; open_page fails on that.)
    t0 = time.time() - 60
    dash = _dashboard_with(
        procs, broker, publisher, tmp_path, reading("local", 0, t0, temperature=1.0)
    )
    page = open_page()
    foreign: list[str] = []

    def only_the_dashboard(route: Any) -> None:
        if route.request.url.startswith(dash.url + "/"):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_dashboard)
    _live(page, dash)
    publisher.reading(reading("local", 1, t0 + 1, temperature=2.5))
    values = page.locator("article.card[data-device='local'] .values")
    wait_until(lambda: "2.5" in (values.text_content() or ""), 30, "the live reading")
    page.hover("#chart-temperature")
    page.wait_for_selector("#chart-temperature .modebar")
    page.click("#ranges button[data-range='86400']")
    page.wait_for_function("() => document.getElementById('chart-temperature')?.data?.length")
    assert foreign == []


def _hide(page: Any, hidden: bool) -> None:
    """Headless Chromium has no tab strip, so no tab is ever hidden: the test plays the
    browser's part, with the same property and event a real tab switch changes."""
    page.evaluate(
        "(hidden) => {"
        " Object.defineProperty(document, 'hidden', {configurable: true, get: () => hidden});"
        " Object.defineProperty(document, 'visibilityState', {configurable: true,"
        "   get: () => hidden ? 'hidden' : 'visible'});"
        " document.dispatchEvent(new Event('visibilitychange')); }",
        hidden,
    )


def test_a_hidden_tab_draws_nothing_and_catches_up_when_shown(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path, open_page: OpenPage
) -> None:
    dash = start_dashboard(procs, broker, tmp_path / "dash")
    t0 = time.time() - 600
    publisher.reading(reading("away", 0, t0, temperature=1.0))
    wait_until(lambda: dash.get("/api/devices")[1], 10, "the first reading stored")
    page = open_page()
    _live(page, dash)
    # A second listener on the same stream tells when the readings have reached the page.
    page.evaluate(
        "() => { window.__seen = 0; window.__es = new EventSource('/api/stream');"
        " window.__es.addEventListener('reading', () => window.__seen++); }"
    )
    page.wait_for_function("() => window.__es.readyState === EventSource.OPEN")
    _hide(page, True)
    for i in range(1, 41):
        publisher.reading(reading("away", i, t0 + i, temperature=1.0 + i))
    page.wait_for_function("() => window.__seen >= 40", timeout=30_000)
    page.wait_for_timeout(1500)  # several frame intervals: a visible page would have drawn
    assert len(_trace(page, "away")["y"]) == 1, "the hidden page drew"
    _hide(page, False)
    page.wait_for_function(
        "() => document.getElementById('chart-temperature').data[0].y.length === 41",
        timeout=30_000,
    )
    assert _trace(page, "away")["y"] == [float(v) for v in range(1, 42)]
    card = page.locator("article.card[data-device='away'] dd")
    wait_until(lambda: card.first.text_content() == "41", 30, "the card caught up")


def _luminance(rgb: list[float]) -> float:
    def channel(c: float) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else float(((c + 0.055) / 1.055) ** 2.4)

    r, g, b = (channel(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(fg: list[float], bg: list[float]) -> float:
    a, b = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)


# Every visible text node's colour and the first opaque background behind it, from the
# computed styles (the way a contrast checker reads a page).
TEXT_COLOURS = """() => {
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!n.textContent.trim() || !el.checkVisibility() || el.closest('svg')) continue;
    const style = getComputedStyle(el);
    let bg = el;
    while (bg && rgb(getComputedStyle(bg).backgroundColor)[3] === 0) bg = bg.parentElement;
    const back = getComputedStyle(bg || document.documentElement).backgroundColor;
    out.push({text: n.textContent.trim().slice(0, 30), fg: rgb(style.color), bg: rgb(back),
              opacity: Number(style.opacity)});
  }
  return out;
}"""


def _board_with_alert(
    procs: Procs, broker: Broker, publisher: Publisher, data: Path
) -> RunningDashboard:
    rules = data.parent / "alerts.toml"
    rules.write_text('[[rule]]\nname = "too hot"\nmetric = "temperature"\nabove = 30\n')
    dash = start_dashboard(procs, broker, data, "--alerts", str(rules))
    now = time.time()
    for b in range(3):
        for i in range(30):
            publisher.reading(
                reading(f"board-{b}", i, now - 300 + i * 10, temperature=20 + b + i % 5)
            )
    publisher.send("iotpipe/board-0/status", b"online", retain=True)
    publisher.reading(reading("board-0", 99, now, temperature=31.0))
    wait_until(lambda: len(dash.get("/api/devices")[1]) == 3, 10, "three boards")
    return dash


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_phone_layout_fits_390_px_and_its_text_is_readable(
    procs: Procs,
    broker: Broker,
    publisher: Publisher,
    tmp_path: Path,
    open_page: OpenPage,
    scheme: str,
) -> None:
    dash = _board_with_alert(procs, broker, publisher, tmp_path / "dash")
    page = open_page(width=390, scheme=scheme)
    _live(page, dash)
    page.wait_for_selector("#alert-list li")
    page.wait_for_function("() => document.querySelectorAll('#charts .legend .key').length === 3")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "sideways scroll"
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    body = [float(c) for c in background.strip("rgba()").split(",")[:3]]
    assert (_luminance(body) < 0.05) == (scheme == "dark"), background
    texts = page.evaluate(TEXT_COLOURS)
    assert len(texts) > 20  # cards, legend, alerts, controls: the page really rendered
    poor = [t for t in texts if t["opacity"] == 1 and _contrast(t["fg"], t["bg"]) < 4.5]
    assert poor == [], poor
    # The chart is drawn in the same scheme as the page around it.
    paper = page.evaluate("document.getElementById('chart-temperature').layout.paper_bgcolor")
    panel = page.evaluate("getComputedStyle(document.querySelector('.chart-box')).backgroundColor")
    as_rgb = (
        "(c) => { const d = document.createElement('i'); d.style.color = c;"
        " document.body.append(d); const v = getComputedStyle(d).color; d.remove(); return v; }"
    )
    assert page.evaluate(as_rgb, paper) == panel
    page.screenshot(path=str(tmp_path / f"phone-{scheme}.png"), full_page=True)


def test_times_are_in_the_readers_zone_tooltips_carry_units_and_zoom_refetches(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path, open_page: OpenPage
) -> None:
    dash = start_dashboard(procs, broker, tmp_path / "dash")
    publisher.send("iotpipe/zoned/meta", b'{"units": {"temperature": "\\u00b0C"}}', retain=True)
    now = time.time()
    for i in range(20):
        publisher.reading(reading("zoned", i, now - 3000 + i * 100, temperature=20 + i))
    wait_until(lambda: dash.get("/api/devices")[1], 10, "readings stored")
    page = open_page()
    _live(page, dash)
    assert ZONE in (page.locator("#zone").text_content() or "")
    title = page.evaluate("document.getElementById('chart-temperature').layout.xaxis.title.text")
    assert ZONE in title
    # The last point sits at the wall-clock time of New York, not UTC's.
    shown = page.evaluate("(() => { const x = document.getElementById('chart-temperature')"
                          ".data[0].x; return x[x.length - 1]; })()")  # fmt: skip
    last_ts = now - 3000 + 19 * 100
    wall = time.strftime("%Y-%m-%d %H:%M", _zone_time(last_ts))
    assert time.strftime("%Y-%m-%d %H:%M", time.gmtime(shown / 1000)) == wall
    page.evaluate(
        "() => Plotly.Fx.hover(document.getElementById('chart-temperature'),"
        " [{curveNumber: 0, pointNumber: 19}])"
    )
    hover = page.locator("#chart-temperature .hoverlayer").text_content() or ""
    assert "39 °C" in hover and "zoned" in hover, hover
    start, end = now - 2000, now - 1000
    with page.expect_request(lambda r: "until=" in r.url) as zoom:
        page.evaluate(
            "([a, b]) => Plotly.relayout(document.getElementById('chart-temperature'),"
            " {'xaxis.range[0]': a, 'xaxis.range[1]': b})",
            [time.strftime("%Y-%m-%d %H:%M:%S", _zone_time(t)) for t in (start, end)],
        )
    query = zoom.value.url
    assert abs(float(query.split("since=")[1].split("&")[0]) - start) < 1.5
    assert abs(float(query.split("until=")[1].split("&")[0]) - end) < 1.5
    page.wait_for_function(
        "() => document.getElementById('chart-temperature').data[0].y.length === 10"
    )  # the window's ten readings, fetched at full resolution


def test_an_alerts_chart_link_opens_the_chart_at_the_alerts_time(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path, open_page: OpenPage
) -> None:
    dash = start_dashboard(procs, broker, tmp_path / "dash")
    now = time.time()
    for i in range(20):
        publisher.reading(reading("linked", i, now - 3000 + i * 100, temperature=20 + i))
    wait_until(lambda: dash.get("/api/devices")[1], 10, "readings stored")
    # As iotpipe/dashboard/alert_text.py's chart_link makes it; 50 s from any reading, so that the
    # link's whole seconds hold readings 10 to 19 exactly.
    start, end = now - 2050, now - 1050
    page = open_page()
    with page.expect_request(lambda r: "/api/charts/temperature" in r.url) as chart:
        page.goto(f"{dash.url}/?device=linked&metric=temperature&since={start:.0f}&until={end:.0f}")
    query = chart.value.url
    assert f"since={start:.0f}&until={end:.0f}" in query, query
    page.wait_for_function(
        "() => document.getElementById('chart-temperature')?.data?.[0]?.y.length === 10"
    )  # only the window's ten readings, not the last hour's
    assert page.evaluate("document.getElementById('chart-temperature').layout.xaxis.range")


def _zone_time(ts: float) -> time.struct_time:
    return dt.datetime.fromtimestamp(ts, ZoneInfo(ZONE)).timetuple()
