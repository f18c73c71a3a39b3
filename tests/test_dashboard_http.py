"""The real `iotpipe dashboard` process against the real Mosquitto: ingest, HTTP API, live
stream, restarts and bad input."""

from __future__ import annotations

import gzip
import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests import test_dashboard_support as support
from tests.conftest import Broker, Procs, free_port, wait_until
from tests.test_dashboard_support import (
    Publisher,
    reading,
    start_dashboard,
)

publisher = support.publisher  # fixture

META = {
    "device": "bench-1",
    "boot": "0a1b2c3d",
    "fw": "0.1.0",
    "board": "unix",
    "sensors": ["sim"],
    "units": {"temperature": "°C", "humidity": "%"},
    "interval_ms": 1000,
}


def _publish_some(pub: Publisher, device: str, seqs: range, t0: float) -> None:
    for i in seqs:
        pub.reading(reading(device, i, t0 + i, temperature=20 + i / 10, humidity=50.0))


def test_published_readings_appear_in_devices_and_series(
    procs: Procs,
    broker: Broker,
    publisher: Publisher,
    tmp_path: Path,
) -> None:
    dash = start_dashboard(procs, broker, tmp_path / "dash")
    publisher.send("iotpipe/bench-1/meta", json.dumps(META).encode(), retain=True)
    publisher.send("iotpipe/bench-1/status", b"online", retain=True)
    t0 = time.time() - 100
    _publish_some(publisher, "bench-1", range(5), t0)

    def stored() -> bool:
        devices = dash.get("/api/devices")[1]
        return (
            bool(devices) and devices[0]["last"] is not None and devices[0]["last"]["ts"] > t0 + 3
        )

    wait_until(stored, 10, "the readings in /api/devices")
    (device,) = dash.get("/api/devices")[1]
    assert device["id"] == "bench-1" and device["status"] == "online"
    assert device["units"] == {"humidity": "%", "temperature": "°C"}
    assert device["last"]["metrics"] == {"temperature": 20.4, "humidity": 50.0}
    status, body = dash.get(f"/api/devices/bench-1/series?metric=temperature&since={t0 - 1}")
    assert status == 200
    assert body["t"] == [round(t0 + i, 3) for i in range(5)]
    assert body["v"] == [20.0, 20.1, 20.2, 20.3, 20.4]


def test_a_board_that_stopped_sending_is_shown_late_until_it_sends_again(
    procs: Procs,
    broker: Broker,
    publisher: Publisher,
    tmp_path: Path,
) -> None:
    # A battery board's status stays "online" while it sleeps (it leaves without a will);
    # three missed intervals of the interval its meta announced are what mark it.
    dash = start_dashboard(procs, broker, tmp_path / "dash")
    publisher.send("iotpipe/bench-1/meta", json.dumps(META).encode(), retain=True)
    publisher.send("iotpipe/bench-1/status", b"online", retain=True)
    publisher.reading(reading("bench-1", 0, time.time() - 30, temperature=20.0))

    def device() -> dict[str, object]:
        found: list[dict[str, object]] = dash.get("/api/devices")[1]
        return found[0] if found else {}

    wait_until(lambda: device().get("last") and device().get("meta"), 10, "reading and meta")
    assert device()["status"] == "online" and device()["late"] is True
    publisher.reading(reading("bench-1", 1, time.time(), temperature=20.5))
    wait_until(lambda: device()["late"] is False, 10, "a fresh reading clears late")


def test_history_survives_a_restart_and_readings_sent_meanwhile_arrive(
    procs: Procs,
    broker: Broker,
    publisher: Publisher,
    tmp_path: Path,
) -> None:
    data = tmp_path / "dash"
    dash = start_dashboard(procs, broker, data)
    t0 = time.time() - 100
    _publish_some(publisher, "dev-r", range(3), t0)
    series = "/api/devices/dev-r/series?metric=temperature&since=0"
    wait_until(lambda: len(dash.get(series)[1].get("t", [])) == 3, 10, "3 readings stored")
    assert dash.proc.stop() == 0
    # The broker keeps the dashboard's persistent session: these wait for it there.
    _publish_some(publisher, "dev-r", range(3, 6), t0)
    again = start_dashboard(procs, broker, data, name="dashboard-again")
    wait_until(lambda: len(again.get(series)[1].get("t", [])) == 6, 10, "all 6 readings")


def test_garbage_on_telemetry_is_counted_and_good_data_around_it_is_stored(
    procs: Procs,
    broker: Broker,
    publisher: Publisher,
    tmp_path: Path,
) -> None:
    dash = start_dashboard(procs, broker, tmp_path / "dash")
    t0 = time.time() - 100
    publisher.reading(reading("dev-g", 1, t0))
    publisher.send("iotpipe/dev-g/telemetry", b"\xff not json")
    publisher.send("iotpipe/dev-g/telemetry", b'{"device": "dev-g", "seq": "x"}')
    publisher.send("iotpipe/other/telemetry", reading("dev-g", 9, t0).to_json())
    publisher.send("iotpipe/dev-g/status", b"maybe")
    publisher.reading(reading("dev-g", 2, t0 + 1))
    series = "/api/devices/dev-g/series?metric=temperature&since=0"
    wait_until(lambda: len(dash.get(series)[1].get("t", [])) == 2, 10, "both good readings")
    metrics = dash.get("/metrics")[1]
    assert 'iotpipe_dashboard_rejected_total{reason="not_json"} 1' in metrics
    assert 'iotpipe_dashboard_rejected_total{reason="bad_field"} 1' in metrics
    assert 'iotpipe_dashboard_rejected_total{reason="device_mismatch"} 1' in metrics
    assert 'iotpipe_dashboard_rejected_total{reason="bad_status"} 1' in metrics
    assert "iotpipe_dashboard_stored_total 2" in metrics
    assert dash.proc.popen.poll() is None


def test_bad_parameters_are_400s_that_name_the_parameter(
    procs: Procs,
    broker: Broker,
    publisher: Publisher,
    tmp_path: Path,
) -> None:
    dash = start_dashboard(procs, broker, tmp_path / "dash")
    publisher.reading(reading("dev-b", 1, time.time()))
    wait_until(lambda: dash.get("/api/devices")[1], 10, "the device")
    base = "/api/devices/dev-b/series?metric=temperature"
    for query, word in [
        ("&since=yesterday", "'since'"),
        ("&until=-5", "'until'"),
        ("&since=10&until=5", "'since'"),
        ("&points=0", "'points'"),
        ("&points=999999", "'points'"),
        ("&points=1.5", "'points'"),
    ]:
        status, body = dash.get(base + query)
        assert status == 400, query
        assert word in body["error"], (query, body)
    status, body = dash.get("/api/devices/dev-b/series")
    assert status == 400 and "'metric'" in body["error"]


def test_unknown_devices_metrics_and_paths_are_404s_in_json(
    procs: Procs,
    broker: Broker,
    publisher: Publisher,
    tmp_path: Path,
) -> None:
    dash = start_dashboard(procs, broker, tmp_path / "dash")
    publisher.reading(reading("dev-n", 1, time.time()))
    wait_until(lambda: dash.get("/api/devices")[1], 10, "the device")
    for path, word in [
        ("/api/devices/nobody/series?metric=temperature", "nobody"),
        ("/api/devices/dev-n/series?metric=pressure", "pressure"),
        ("/api/devices/%3Cscript%3E/series?metric=x", "no device"),
        ("/api/nothing-here", "not found"),
    ]:
        status, body = dash.get(path)
        assert status == 404, path
        assert word in body["error"].lower(), (path, body)


def test_the_page_loads_plotly_from_the_dashboard_itself(
    procs: Procs, broker: Broker, tmp_path: Path
) -> None:
    dash = start_dashboard(procs, broker, tmp_path / "dash")
    status, page = dash.get("/")
    assert status == 200
    head = page.split("<body>")[0]
    assert "http" not in head and "<script>" not in page  # no inline script: a strict CSP
    src = re.search(r'<script src="(/assets/plotly-basic\.min\.[0-9a-f]{12}\.js)"', head)
    assert src, head
    request = urllib.request.Request(dash.url + src[1], headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        body = gzip.decompress(resp.read())
        assert resp.headers["Content-Encoding"] == "gzip"
        assert "immutable" in resp.headers["Cache-Control"]
    assert b"plotly.js (basic - minified)" in body[:200]
    etag = {"If-None-Match": resp.headers["ETag"]}
    with pytest.raises(urllib.error.HTTPError) as cached:
        urllib.request.urlopen(urllib.request.Request(dash.url + src[1], headers=etag), timeout=10)
    assert cached.value.code == 304
    status, missing = dash.get("/assets/app.000000000000.js")
    assert status == 404 and "reload" in missing["error"]


def test_the_live_stream_pushes_each_new_reading(
    procs: Procs,
    broker: Broker,
    publisher: Publisher,
    tmp_path: Path,
) -> None:
    dash = start_dashboard(procs, broker, tmp_path / "dash")
    frames: list[str] = []
    with urllib.request.urlopen(dash.url + "/api/stream", timeout=10) as resp:
        assert resp.headers.get_content_type() == "text/event-stream"
        while "connected" not in resp.readline().decode():
            pass
        publisher.reading(reading("dev-s", 7, time.time(), temperature=21.5))
        while not any("dev-s" in f for f in frames):  # readline times out after 10 s
            frames.append(resp.readline().decode())
    event = json.loads(next(f for f in frames if "dev-s" in f).removeprefix("data: "))
    assert (event["device"], event["seq"], event["metrics"]) == ("dev-s", 7, {"temperature": 21.5})


def test_an_unreachable_broker_still_serves_history(procs: Procs, tmp_path: Path) -> None:
    port = free_port()
    proc = procs.iotpipe(
        "dashboard",
        "dashboard",
        "--broker",
        f"mqtt://127.0.0.1:{free_port()}",
        "--http",
        f"127.0.0.1:{port}",
        "--data",
        str(tmp_path / "dash"),
    )
    from tests.test_dashboard_support import http

    wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 20, "healthz")
    status, body = http(f"http://127.0.0.1:{port}/healthz")
    assert status == 200 and body["mqtt_connected"] is False
    assert http(f"http://127.0.0.1:{port}/api/devices") == (200, [])
    assert proc.popen.poll() is None
    assert "cannot reach broker" in proc.output()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def test_open_streams_are_capped_and_the_api_still_answers(
    procs: Procs, broker: Broker, tmp_path: Path
) -> None:
    """8 server threads: 2 may hold live streams, the rest stay free for the API."""
    dash = start_dashboard(procs, broker, tmp_path / "dash", "--http-threads", "8")
    streams = [urllib.request.urlopen(dash.url + "/api/stream", timeout=10) for _ in range(2)]
    try:
        for s in streams:
            assert "connected" in s.readline().decode() + s.readline().decode()
        status, body = dash.get("/api/stream")
        assert status == 503 and "live streams open" in body["error"]
        for _ in range(10):
            assert dash.get("/api/devices") == (200, [])
        assert "iotpipe_dashboard_sse_clients 2" in dash.get("/metrics")[1]
    finally:
        for s in streams:
            s.close()


def test_a_large_backlog_is_stored_once_each_and_acknowledged(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path
) -> None:
    """Many reads of the buffered client's 64 KiB and its PUBACKs sent in batches: every
    reading stored once, a duplicate and garbage among them counted, and nothing comes
    back after a restart (the broker had every PUBACK)."""
    data = tmp_path / "dash"
    first = start_dashboard(procs, broker, data, name="first")
    first.proc.stop()
    t0 = time.time() - 10_000
    sent = [reading("dev-b", i, t0 + i, temperature=20 + i % 7, humidity=50.0) for i in range(5000)]
    infos = [publisher.client.publish("iotpipe/dev-b/telemetry", r.to_json(), 1) for r in sent]
    publisher.send("iotpipe/dev-b/telemetry", b"garbage")
    publisher.reading(sent[17])  # a redelivery
    for info in infos:
        info.wait_for_publish(30)

    def counters(dash: support.RunningDashboard) -> str:
        return str(dash.get("/metrics")[1])

    second = start_dashboard(procs, broker, data, name="second")
    wait_until(lambda: "stored_total 5000.0\n" in counters(second), 30, "5000 stored")
    wait_until(lambda: "duplicates_total 1.0\n" in counters(second), 10, "the duplicate")
    assert 'rejected_total{reason="not_json"} 1' in counters(second)
    second.proc.stop()
    third = start_dashboard(procs, broker, data, name="third")
    # A fresh reading after the restart: the broker delivers in order, so anything it had
    # kept for this session would come (and be counted) before it.
    publisher.reading(reading("dev-b", 5000, t0 + 5000, temperature=1.0))
    wait_until(lambda: "stored_total 1.0\n" in counters(third), 30, "the fresh reading")
    assert "received_total 1.0\n" in counters(third), "nothing came again"
    query = f"metric=temperature&since={t0 - 1}&points=10000"
    status, body = third.get(f"/api/devices/dev-b/series?{query}")
    assert status == 200 and len(body["t"]) == 5001
