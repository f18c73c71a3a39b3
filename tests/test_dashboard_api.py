"""Commands through MQTT 5 request/response, alerts, CSV export, shared ingest and the
OpenAPI document, against the real dashboard process and the real broker. The bridge's
side of commands is played by a small real MQTT responder, as the contract says it acts."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from iotpipe.counters import Counters
from iotpipe.dashboard.app import create_app
from iotpipe.dashboard.live import Hub
from iotpipe.dashboard.services import Services
from iotpipe.dashboard.store import open_store
from tests import test_dashboard_support as support
from tests.conftest import ROOT, Broker, Procs, Subscriber, wait_until
from tests.test_dashboard_support import BOOT, Publisher, http, reading, start_dashboard

publisher = support.publisher  # fixture
postgres = support.postgres  # fixture


class Responder:
    """Answers every command like the bridge would (except for devices in ``mute``)."""

    def __init__(self, broker: Broker, mute: tuple[str, ...] = ()) -> None:
        self.requests: list[tuple[dict[str, Any], Any]] = []
        self.mute = mute
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._answer
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_connect = lambda c, *a: c.subscribe("iotpipe/+/cmd", qos=1)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def _answer(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        request = json.loads(msg.payload)
        self.requests.append((request, msg.properties))
        if msg.topic.split("/")[1] in self.mute:
            return
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.CorrelationData = msg.properties.CorrelationData  # type: ignore[union-attr]
        answer = {"id": request["id"], "ok": True, "result": {"seq": 7, "cmd": request["cmd"]}}
        topic = msg.properties.ResponseTopic  # type: ignore[union-attr]
        client.publish(topic, json.dumps(answer), qos=1, properties=props)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def responder(broker: Broker) -> Iterator[Responder]:
    made = Responder(broker, mute=("mute",))
    yield made
    made.close()


def _known(pub: Publisher, dash: support.RunningDashboard, *devices: str) -> None:
    for device in devices:
        pub.reading(reading(device, 1, time.time()))
    wait_until(lambda: len(dash.get("/api/devices")[1]) == len(devices), 10, "devices")


def test_a_command_gets_the_boards_answer_through_mqtt5_request_response(
    procs: Procs, broker: Broker, publisher: Publisher, responder: Responder, tmp_path: Path
) -> None:
    dash = start_dashboard(procs, broker, tmp_path / "dash", "--command-timeout", "1")
    _known(publisher, dash, "dev-c", "mute")
    url = dash.url + "/api/devices/dev-c/commands"
    status, body = http(url, {"cmd": "read", "args": {}}, token=dash.token)
    assert status == 200, body
    assert body["ok"] is True and body["result"] == {"seq": 7, "cmd": "read"}
    assert body["latency_ms"] >= 0
    request, props = responder.requests[0]
    assert set(request) == {"id", "cmd", "args", "reply_to"} and request["cmd"] == "read"
    assert request["reply_to"] == props.ResponseTopic  # the same topic, for MQTT 3.1.1 boards
    assert props.ResponseTopic.startswith("iotpipe/dashboard/iotpipe-dashboard-")
    assert props.CorrelationData
    started = time.monotonic()
    status, body = http(dash.url + "/api/devices/mute/commands", {"cmd": "read"}, token=dash.token)
    assert status == 504 and "no answer" in body["error"]
    assert 0.9 < time.monotonic() - started < 60  # after the timeout, not hung: slow is fine


def test_bad_command_requests_are_400_or_404(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path
) -> None:
    dash = start_dashboard(procs, broker, tmp_path / "dash")
    _known(publisher, dash, "dev-c")
    url = dash.url + "/api/devices/dev-c/commands"
    for body, word in [
        ([1, 2], "JSON object"),
        ({"args": {}}, "'cmd'"),
        ({"cmd": "Read Now"}, "'cmd'"),
        ({"cmd": "read", "args": [1]}, "'args'"),
        ({"cmd": "read", "extra": 1}, "unknown fields"),
    ]:
        status, answer = http(url, body, token=dash.token)
        assert status == 400 and word in answer["error"], (body, answer)
    status, answer = http(
        dash.url + "/api/devices/nobody/commands", {"cmd": "read"}, token=dash.token
    )
    assert status == 404 and "nobody" in answer["error"]
    status, answer = http(dash.url + "/api/devices/dev-c/commands", method="GET")
    assert status == 405


def test_a_threshold_crossing_is_published_once_and_listed(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path
) -> None:
    rules = tmp_path / "alerts.toml"
    rules.write_text('[[rule]]\nname = "too hot"\nmetric = "temperature"\nabove = 30\n')
    dash = start_dashboard(procs, broker, tmp_path / "dash", "--alerts", str(rules))
    alerts = Subscriber(broker.port, "iotpipe/+/alert")
    try:
        t0 = time.time() - 10
        for seq, value in enumerate([20.0, 35.0, 36.0, 25.0]):
            publisher.reading(reading("dev-a", seq, t0 + seq, temperature=value))
        wait_until(lambda: len(alerts.on("dev-a/alert")) == 2, 10, "two alert messages")
        got = [json.loads(m.payload) for m in alerts.on("dev-a/alert")]
    finally:
        alerts.close()
    assert [(a["state"], a["value"]) for a in got] == [("firing", 35.0), ("resolved", 25.0)]
    assert got[0]["rule"] == "too hot" and got[0]["metric"] == "temperature"
    listed = dash.get("/api/alerts")[1]
    assert [a["state"] for a in listed] == ["resolved", "firing"]


def test_a_broken_alerts_file_stops_the_dashboard_with_a_message(
    procs: Procs, broker: Broker, tmp_path: Path
) -> None:
    rules = tmp_path / "alerts.toml"
    rules.write_text('[[rule]]\nmetric = "temperature"\n')
    proc = procs.iotpipe(
        "dashboard", "dashboard", "--broker", broker.url, "--data", str(tmp_path / "d"),
        "--http", f"127.0.0.1:{support.free_port()}", "--alerts", str(rules),
    )  # fmt: skip
    assert proc.popen.wait(30) == 1
    assert "iotpipe: " in proc.output() and "give 'above', 'below' or both" in proc.output()
    assert "Traceback" not in proc.output()


def test_csv_export_has_every_raw_sample(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path
) -> None:
    dash = start_dashboard(procs, broker, tmp_path / "dash")
    t0 = 1_700_000_000.0
    for i in range(3):
        publisher.reading(reading("dev-x", i, t0 + i, temperature=20 + i, humidity=50.5))
    series = "/api/devices/dev-x/series?metric=humidity&since=0"
    wait_until(lambda: len(dash.get(series)[1].get("t", [])) == 3, 10, "3 readings")
    status, text = dash.get("/api/devices/dev-x/export.csv")
    assert status == 200
    lines = text.strip().splitlines()
    # The first four columns as before; then each reading's identity and board clock.
    assert lines[0] == "ts,device,metric,value,boot,seq,uptime_ms,flag"
    assert f"1700000000.000,dev-x,temperature,20.0,{BOOT},0,0," in lines
    assert f"1700000002.000,dev-x,humidity,50.5,{BOOT},2,2000," in lines
    assert len(lines) == 1 + 6
    status, text = dash.get("/api/devices/dev-x/export.csv?metric=temperature&since=1700000001")
    assert text.strip().splitlines()[1:] == [
        f"1700000001.000,dev-x,temperature,21.0,{BOOT},1,1000,",
        f"1700000002.000,dev-x,temperature,22.0,{BOOT},2,2000,",
    ]


def test_two_dashboards_share_ingest_and_one_postgresql_store(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path, postgres: Any
) -> None:
    url = postgres.new_database()
    extra = ("--store", url, "--share-group", "dash")
    first = start_dashboard(procs, broker, tmp_path / "d1", *extra, name="dash-1")
    second = start_dashboard(procs, broker, tmp_path / "d2", *extra, name="dash-2")
    t0 = time.time() - 100
    for i in range(40):
        publisher.reading(reading("dev-s", i, t0 + i))
    series = "/api/devices/dev-s/series?metric=temperature&since=0"
    wait_until(lambda: len(first.get(series)[1].get("t", [])) == 40, 10, "all 40 in the store")
    assert len(second.get(series)[1]["t"]) == 40
    stored = [d.metric("iotpipe_dashboard_stored_total") for d in (first, second)]
    assert sum(stored) == 40 and min(stored) > 0, stored  # each took a share, none twice


def test_every_route_is_in_the_openapi_document(tmp_path: Path) -> None:
    counters = Counters("t")
    store = open_store(tmp_path)
    try:
        app = create_app(Services(store, Hub(counters), counters))
        doc = json.loads(app.test_client().get("/api/openapi.json").data)
    finally:
        store.close()
    routes = {
        (rule.rule.replace("<", "{").replace(">", "}"), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods or ()
        if method in ("GET", "POST")
    }
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert routes == documented
    assert doc["openapi"].startswith("3.")


def test_every_documented_route_is_in_the_dashboard_doc() -> None:
    doc = json.loads((ROOT / "iotpipe" / "dashboard" / "static" / "openapi.json").read_text())
    text = (ROOT / "docs" / "dashboard.md").read_text()
    table = re.sub(r"<[a-z]+>", "{}", text.split("## HTTP API")[1])
    for path, ops in doc["paths"].items():
        for method in ops:
            if path in ("/vendor/plotly.min.js", "/api/openapi.json"):
                continue
            shown = re.sub(r"\{[a-z]+\}", "{}", path)
            assert f"`{method.upper()} {shown}" in table, f"{method.upper()} {path} undocumented"
