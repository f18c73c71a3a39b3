"""The live page in real headless Chromium: main-thread load, reading → pixel latency, heap,
first load.

    .venv/bin/python benchmarks/browser_bench.py [--quick] [--seconds S] [--rows N]

1. Renderer: plotly's SVG ``scatter`` against WebGL ``scattergl`` (the full plotly.js from
   the plotly package, which has both), 10 traces of 1,000 … 20,000 points, the time of one
   ``extendTraces`` to the frame after it. This is what chose the page's renderer.
2. Live: readings published through the real broker and dashboard at 1, 20, 100 and 500
   readings/s across 1, 10 and 50 boards, for S seconds each. Each reading carries its
   publish time (Unix ms) as the metric ``sent``; the page's ``sent`` chart is watched and,
   in the animation frame after each draw, every newly drawn point gives now - sent. The
   main thread's busy fraction is CDP ``Performance.getMetrics`` TaskDuration over the
   wall time. Reference, same run: a bare page with only an EventSource on the same stream.
3. A day: the 10-board page fed 24 h of 1 Hz readings (864,000) through the page's live
   entry point, its JS heap after a GC, then the 100 readings/s case again on that page.
4. First load: a year of 1 Hz history (``--rows``; a month with ``--quick``), a cold
   browser: bytes transferred, requests, time from navigation to the first drawn chart.
Not a test: the figures depend on the machine (docs/benchmarks.md, section Page).
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import dashboard_bench as db

from iotpipe.topics import Telemetry

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
WEBGL_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
RATES = (1, 20, 100, 500)
BOARDS = (1, 10, 50)
DAY = 86400

# Installed after the page's first draw: after each Plotly call on the `sent` chart, the
# next animation frame (the one after the drawn frame) notes now - sent of each new point.
WATCH = """() => {
  window.__lat = []; window.__drawn = 0; window.__last = 0; window.__draw = [];
  const gd = document.getElementById("chart-sent");
  const seen = new Map(gd.data.map((t) => [t.name, Math.max(0, ...t.y.filter((y) => y))]));
  const look = () => requestAnimationFrame(() => {
    const now = Date.now();
    for (const t of gd.data) {
      const before = seen.get(t.name) || 0;
      for (let j = t.y.length - 1; j >= 0 && t.y[j] > before; j--) {
        window.__lat.push(now - t.y[j]); window.__drawn++;
      }
      const top = t.y.length ? t.y[t.y.length - 1] : 0;
      if (top > before) seen.set(t.name, top);
      window.__last = Math.max(window.__last, top);
    }
  });
  for (const name of ["extendTraces", "react"]) {
    const f = Plotly[name];
    Plotly[name] = function (div, ...rest) {
      const started = performance.now();
      const out = f.call(this, div, ...rest);
      window.__draw.push(performance.now() - started);
      if (div === gd) look();
      return out;
    };
  }
}"""


def reading(board: int, seq: int, ts: float, sent_ms: float) -> bytes:
    metrics = {"sent": round(sent_ms, 1), "temperature": round(20 + (seq % 100) / 10, 1)}
    return Telemetry(f"board-{board:02d}", "0a1b2c3d", seq, round(ts, 3), seq, metrics).to_json()


class Browser:
    def __init__(self, webgl: bool = False) -> None:
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        args = ARGS + (WEBGL_ARGS if webgl else [])
        self.browser = self._pw.chromium.launch(executable_path=CHROMIUM, args=args)

    def page(self, width: int = 1280) -> tuple[Any, Any]:
        context = self.browser.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        return page, cdp

    def close(self) -> None:
        self.browser.close()
        self._pw.stop()


def task_seconds(cdp: Any) -> float:
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return float(next(m["value"] for m in metrics if m["name"] == "TaskDuration"))


def heap_mb(cdp: Any) -> float:
    cdp.send("HeapProfiler.collectGarbage")
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return float(next(m["value"] for m in metrics if m["name"] == "JSHeapUsedSize")) / 2**20


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


# ---- 1. renderer ------------------------------------------------------------------------


def bench_renderer(browser: Browser, quick: bool) -> list[dict[str, object]]:
    from plotly.offline import get_plotlyjs

    page, _ = browser.page()
    page.set_content("<div id=c style='width:1200px;height:320px'></div>")
    page.add_script_tag(content=get_plotlyjs())
    webgl = page.evaluate("() => !!document.createElement('canvas').getContext('webgl')")
    rows: list[dict[str, object]] = []
    for kind in ("scatter", "scattergl"):
        if kind == "scattergl" and not webgl:
            rows.append({"type": kind, "error": "no WebGL in this browser"})
            continue
        for points in (1000, 5000) if quick else (1000, 5000, 20000):
            ms = page.evaluate(
                """async ([kind, n, frames]) => {
                  const div = document.getElementById("c");
                  const t0 = Date.now() - n * 1000;
                  const traces = [...Array(10).keys()].map((k) => ({type: kind, mode: "lines",
                    x: [...Array(n).keys()].map((i) => t0 + i * 1000),
                    y: [...Array(n).keys()].map((i) => k + Math.sin(i / 50))}));
                  await Plotly.newPlot(div, traces, {xaxis: {type: "date"}});
                  const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
                  const times = [];
                  for (let f = 0; f < frames; f++) {
                    await frame();
                    const start = performance.now();
                    const now = Date.now();
                    Plotly.extendTraces(div, {x: traces.map(() => [now]), y: traces.map(() => [1])},
                      [...Array(10).keys()], n);
                    await frame();
                    times.push(performance.now() - start);
                  }
                  Plotly.purge(div);
                  times.sort((a, b) => a - b);
                  return times[Math.floor(times.length / 2)];
                }""",
                [kind, points, 10 if quick else 20],
            )
            rows.append({"type": kind, "traces": 10, "points": points, "extend_ms": round(ms, 1)})
            print("renderer:", json.dumps(rows[-1]), flush=True)
    page.context.close()
    return rows


# ---- 2. live ----------------------------------------------------------------------------


def publish(port: int, boards: int, rate: float, seconds: float, seq0: int) -> int:
    """``rate`` readings/s spread over the boards in turn; returns how many were sent."""
    client = db.publisher(port)
    n = max(1, int(rate * seconds))
    start = time.perf_counter()
    for i in range(n):
        time.sleep(max(0.0, start + i / rate - time.perf_counter()))
        now = time.time()
        board = i % boards
        client.publish(
            f"iotpipe/board-{board:02d}/telemetry", reading(board, seq0 + i, now, now * 1000), 0
        )
    client.loop_stop()
    client.disconnect()
    return n


def open_page(browser: Browser, base: str) -> tuple[Any, Any]:
    page, cdp = browser.page()
    page.goto(base + "/")
    page.wait_for_function("() => document.querySelector('#conn').textContent === 'live'")
    page.wait_for_function("() => document.getElementById('chart-sent')?.data?.length")
    page.evaluate(WATCH)
    return page, cdp


class StreamWatch:
    """The pipeline's share, beside the page's: publish → the SSE event arriving at a plain
    HTTP client in this process (the page cannot be faster than this)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.conn.request("GET", "/api/stream")
        self.resp = self.conn.getresponse()
        self._lat: list[float] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for raw in self.resp:
                if raw.startswith(b"data: ") and b'"sent"' in raw:
                    sent = json.loads(raw[6:])["metrics"]["sent"]
                    self._lat.append(time.time() * 1000 - sent)
        except (OSError, ValueError):
            return  # closed at the end

    def latencies(self) -> list[float]:
        taken, self._lat = self._lat, []
        return taken

    def close(self) -> None:
        self.conn.close()


def measure(
    page: Any,
    cdp: Any,
    port: int,
    boards: int,
    rate: float,
    seconds: float,
    seq0: int,
    stream: StreamWatch,
) -> dict[str, Any]:
    stream.latencies()
    page.evaluate("() => { window.__lat = []; window.__drawn = 0; window.__draw = []; }")
    busy0, wall0 = task_seconds(cdp), time.perf_counter()
    n = publish(port, boards, rate, seconds, seq0)
    published = time.time() * 1000
    # Wait (bounded) until the page has drawn the last reading sent.
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and page.evaluate("window.__last") < published - 1000 / rate - 50
    ):
        time.sleep(0.05)
    busy = (task_seconds(cdp) - busy0) / (time.perf_counter() - wall0)
    lat: list[float] = page.evaluate("window.__lat")
    draws: list[float] = page.evaluate("window.__draw")
    return {
        "boards": boards, "rate": rate, "sent": n, "drawn": len(lat),
        "busy": round(busy, 3),
        "cpu_us_per_reading": round(busy * (time.perf_counter() - wall0) / n * 1e6),
        "p50_ms": round(percentile(lat, 0.5)), "p99_ms": round(percentile(lat, 0.99)),
        "max_ms": round(max(lat, default=float("nan"))),
        "draws_per_s": round(len(draws) / seconds, 1),
        "draw_ms_p50": round(percentile(draws, 0.5), 1),
        "sse_p99_ms": round(percentile(stream.latencies(), 0.99)),
    }  # fmt: skip


def prime(port: int, boards: int, base: str) -> None:
    """One reading per board, stored, so the page opens with every board on its charts."""
    client = db.publisher(port)
    now = time.time()
    for b in range(boards):
        client.publish(
            f"iotpipe/board-{b:02d}/telemetry", reading(b, 0, now - 1, (now - 1) * 1000), 1
        ).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()
    db.wait_for(lambda: len(json.loads(db.get(base + "/api/devices"))) == boards, 60)


def reference(browser: Browser, port: int, base: str, seconds: float) -> dict[str, Any]:
    """The floor: a page that only receives the same stream (EventSource, JSON.parse)."""
    page, cdp = browser.page()
    page.goto(base + "/api/healthz-does-not-exist")  # same origin, no app
    page.evaluate("() => { const s = new EventSource('/api/stream'); window.__n = 0;"
                  " s.addEventListener('reading', (e) => { JSON.parse(e.data); window.__n++; });"
                  " }")  # fmt: skip
    time.sleep(1)
    busy0, wall0 = task_seconds(cdp), time.perf_counter()
    n = publish(port, 10, 100, seconds, 10_000_000)
    time.sleep(0.5)
    busy = (task_seconds(cdp) - busy0) / (time.perf_counter() - wall0)
    page.context.close()
    return {"boards": 10, "rate": 100, "sent": n, "busy": round(busy, 3)}


def bench_live(browser: Browser, tmp: Path, port: int, seconds: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for boards in BOARDS:
        dash = db.Dashboard(tmp, port, tmp / f"live-{boards}")
        prime(port, boards, dash.base)
        page, cdp = open_page(browser, dash.base)
        stream = StreamWatch(dash.port)
        time.sleep(1)
        for k, rate in enumerate(RATES):
            span = seconds if rate > 1 else max(seconds, 10)
            row = measure(page, cdp, port, boards, rate, span, 1 + k * 100_000, stream)
            rows.append(row)
            print("live:", json.dumps(row), flush=True)
        page.context.close()
        if boards == 10:
            ref = reference(browser, port, dash.base, seconds)
            print("reference:", json.dumps(ref), flush=True)
            rows.append({"reference": ref})
            rows.append(bench_day(browser, dash.base, port, seconds, stream))
        stream.close()
        dash.stop()
    return rows


# ---- 3. a day ---------------------------------------------------------------------------


FEED = """([boards, start, hours]) => {
  for (let s = 0; s < hours * 3600; s++) {
    const ts = start + s;
    for (let b = 0; b < boards; b++) {
      const device = "board-" + String(b).padStart(2, "0");
      const metrics = {sent: ts * 1000, temperature: 20 + Math.sin(ts / 600)};
      iotpipeLive.take({device, ts, metrics});
    }
  }
}"""


def bench_day(
    browser: Browser, base: str, port: int, seconds: float, stream: StreamWatch
) -> dict[str, Any]:
    page, cdp = open_page(browser, base)
    fresh_heap = heap_mb(cdp)
    start = time.time() - DAY - 60
    fed_started = time.perf_counter()
    for hour in range(24):  # an hour of 10 boards per call, drawn as the page draws
        page.evaluate(FEED, [10, start + hour * 3600, 1])
    page.wait_for_timeout(1000)
    fed_s = time.perf_counter() - fed_started
    points = page.evaluate(
        "() => document.getElementById('chart-sent').data.map((t) => t.x.length)"
    )
    day_heap = heap_mb(cdp)
    row = measure(page, cdp, port, 10, 100, seconds, 5_000_000, stream)
    page.context.close()
    out = {"day": row, "fed_readings": 24 * 3600 * 10, "feed_s": round(fed_s, 1),
           "points_per_trace": max(points), "heap_fresh_mb": round(fresh_heap, 1),
           "heap_after_day_mb": round(day_heap, 1)}  # fmt: skip
    print("day:", json.dumps(out), flush=True)
    return out


# ---- 4. first load ----------------------------------------------------------------------


def make_history(data: Path, rows: int, end: float) -> float:
    """``rows`` seconds of 1 Hz samples of one metric ending at ``end`` (hour-aligned), with
    their rollups, in SQL (as dashboard_bench.make_year does, but ending now, so the page's
    default hour shows the newest of it)."""
    from iotpipe.dashboard.sqlite_store import SQLiteStore

    t0 = int(end) // 3600 * 3600 - rows
    data.mkdir(parents=True, exist_ok=True)
    SQLiteStore(data / "history.sqlite3").close()  # the schema, as the dashboard makes it
    started = time.perf_counter()
    con = sqlite3.connect(data / "history.sqlite3")
    con.executescript(f"""
        PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;
        INSERT INTO series (id, device, metric) VALUES (1, 'bench', 'temperature');
        INSERT INTO devices (id, status, last_ts, last)
            VALUES ('bench', 'online', {t0 + rows - 1}, '{{"temperature": 20.0}}');
        WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i + 1 < {rows})
        INSERT INTO samples SELECT 1, {t0} + i, i, 20 + (i % 86400) / 8640.0
            + CASE WHEN i % 1000003 = 0 THEN 50 ELSE 0 END FROM c;
        INSERT INTO rollups SELECT 1, 60, CAST(ts / 60 AS INTEGER) * 60, count(*), sum(value),
            min(value), max(value) FROM samples GROUP BY 3;
        INSERT INTO rollups SELECT 1, 3600, bucket / 3600 * 3600, sum(n), sum(sum), min(min),
            max(max) FROM rollups WHERE res = 60 GROUP BY 3;
    """)
    con.close()
    return time.perf_counter() - started


DRAWN = (
    "() => document.querySelector('#chart-temperature .scatterlayer .trace path')"
    " && performance.now()"
)


def load_once(page: Any, sizes: dict[str, float], url: str) -> dict[str, Any]:
    sizes.clear()
    page.goto(url, wait_until="commit")
    shown = page.wait_for_function(DRAWN, polling="raf", timeout=120_000).json_value()
    page.wait_for_timeout(500)  # what loads after the chart is counted too
    timing = page.evaluate(
        "() => performance.getEntriesByType('resource').map((r) => r.name.split('/').pop()"
        " .split('?')[0] + ' ' + Math.round(r.startTime) + '-' + Math.round(r.responseEnd))"
    )
    return {
        "first_chart_ms": round(shown), "bytes": int(sum(sizes.values())), "requests": len(sizes),
        "resources_ms": timing,
    }  # fmt: skip


def bench_first_load(browser: Browser, tmp: Path, port: int, rows: int) -> dict[str, Any]:
    data = tmp / "year"
    made = make_history(data, rows, time.time())
    dash = db.Dashboard(tmp, port, data)
    results: dict[str, Any] = {"rows": rows, "make_s": round(made, 1)}
    page, cdp = browser.page()
    cdp.send("Network.enable")
    sizes: dict[str, float] = {}
    cdp.on(
        "Network.loadingFinished",
        lambda e: sizes.__setitem__(e["requestId"], e["encodedDataLength"]),
    )
    for label in ("cold", "warm"):  # a new browser profile, then the same one again
        results[label] = load_once(page, sizes, dash.base + "/")
        print(f"first load ({label}):", json.dumps(results[label]), flush=True)
    # The whole history: the click to the end of plotly's next draw of that chart.
    results["all_ms"] = round(
        page.evaluate(
            "() => new Promise((done) => { const gd = document.getElementById('chart-temperature');"
            " const t = performance.now();"
            " gd.once('plotly_afterplot', () => done(performance.now() - t));"
            " document.querySelector('#ranges button[data-range=all]').click(); })"
        )
    )
    print("whole year drawn after 'all':", results["all_ms"], "ms", flush=True)
    page.context.close()
    dash.stop()
    return results


def screenshots(browser: Browser, tmp: Path, port: int, out: Path) -> None:
    """The README's pictures: four boards over the last hour, light and dark, wide and phone."""
    import math

    rules = tmp / "alerts.toml"
    rules.write_text('[[rule]]\nname = "too hot"\nmetric = "temperature"\nabove = 27\n')
    dash = db.Dashboard(tmp, port, tmp / "shots", "--alerts", str(rules))
    client = db.publisher(port)
    boards = ("attic", "cellar", "greenhouse", "kitchen")
    units = b'{"units": {"temperature": "\\u00b0C", "humidity": "%"}, "interval_ms": 20000}'
    now = time.time()
    for k, name in enumerate(boards):
        client.publish(f"iotpipe/{name}/meta", units, 1, retain=True).wait_for_publish(10)
        client.publish(f"iotpipe/{name}/status", b"online", 1, retain=True).wait_for_publish(10)
        for i in range(180):
            ts = now - 3600 + i * 20
            wave = math.sin(i / 30 + k)
            metrics = {"temperature": round(18 + 3 * k + 1.5 * wave, 2),
                       "humidity": round(60 - 6 * k + 4 * wave, 1)}  # fmt: skip
            body = Telemetry(name, "0a1b2c3d", i, round(ts, 3), i * 20000, metrics).to_json()
            client.publish(f"iotpipe/{name}/telemetry", body, 1).wait_for_publish(10)
    client.loop_stop()
    out.mkdir(parents=True, exist_ok=True)
    for scheme in ("light", "dark"):
        for width, suffix in ((1280, ""), (390, "-phone")):
            context = browser.browser.new_context(
                viewport={"width": width, "height": 900},
                color_scheme=scheme,
                timezone_id="Europe/Berlin",  # the picture shows a zone other than UTC
            )
            page = context.new_page()
            page.goto(dash.base + "/")
            page.wait_for_function(
                "() => document.querySelectorAll('#charts .legend .key').length === 8"
            )
            page.wait_for_timeout(500)
            name = "dashboard" + ("-dark" if scheme == "dark" else "") + suffix
            page.screenshot(path=str(out / f"{name}.png"), full_page=width < 600)
            context.close()
    dash.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="shorter runs, a month instead of a year"
    )
    parser.add_argument("--seconds", type=float, help="seconds per live case (default 10, quick 4)")
    parser.add_argument("--rows", type=int, help="seconds of 1 Hz history for the first load")
    parser.add_argument("--only", choices=("renderer", "live", "load"), help="run one part")
    parser.add_argument(
        "--screenshots", type=Path, help="only take the README's screenshots into DIR"
    )
    args = parser.parse_args()
    seconds = args.seconds or (4.0 if args.quick else 10.0)
    rows = args.rows or (30 * DAY if args.quick else db.YEAR)
    with tempfile.TemporaryDirectory(prefix="browser-bench-") as name:
        tmp = Path(name)
        port = db.free_port()
        # Locked down as users run it: the dashboard and the publisher log in with their roles.
        db.iotpipe(tmp, "broker", "broker", "--port", str(port), "--data", str(tmp / "b"))
        try:
            db.wait_for(lambda: socket.create_connection(("127.0.0.1", port), 0.2).close() or 1)
            db.load_logins(tmp / "b")
            if args.only in (None, "renderer") and not args.screenshots:
                gl = Browser(webgl=True)  # one Playwright at a time: closed before the next
                try:
                    bench_renderer(gl, args.quick)
                finally:
                    gl.close()
            browser = Browser()
            try:
                if args.screenshots:
                    screenshots(browser, tmp, port, args.screenshots)
                if args.only in (None, "live") and not args.screenshots:
                    bench_live(browser, tmp, port, seconds)
                if args.only in (None, "load") and not args.screenshots:
                    bench_first_load(browser, tmp, port, rows)
            finally:
                browser.close()
        finally:
            for proc in reversed(db.STARTED):
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(30)


if __name__ == "__main__":
    main()
