"""A dashboard command reaches a Wi-Fi board that speaks MQTT 3.1.1 and gets its answer:
the request carries ``reply_to`` besides the MQTT 5 properties, and an answer without
correlation data is matched by its id. The real dashboard, the real locked-down Mosquitto
and a plain paho 3.1.1 client with the board's own login playing the board."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from iotpipe.bridge.requests import Route, parse_request, route_for
from iotpipe.broker import auth, reload
from tests.conftest import Broker, Procs, start_broker, wait_until
from tests.test_dashboard_support import http, reading, start_dashboard


class WifiBoard:
    """Like the firmware's own client: MQTT 3.1.1, reads its cmd topic, answers to
    ``reply_to`` (else ``<base>/<device>/reply``) with the request's id."""

    def __init__(self, broker: Broker, device: str, login: auth.Credentials) -> None:
        self.device = device
        self.requests: list[dict[str, Any]] = []
        self.ready = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        client.username_pw_set(login.user, login.password)
        client.on_connect = lambda c, *a: c.subscribe(f"iotpipe/{device}/cmd", qos=1)
        client.on_subscribe = lambda *a: self.ready.set()
        client.on_message = self._answer
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        self.client = client
        assert self.ready.wait(10), "the board could not subscribe"

    def _answer(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        request = json.loads(msg.payload)
        self.requests.append(request)
        answer = {"id": request["id"], "ok": True, "result": {"pong": request["cmd"]}}
        topic = request.get("reply_to") or f"iotpipe/{self.device}/reply"
        client.publish(topic, json.dumps(answer), qos=1)

    def send_reading(self) -> None:
        body = reading(self.device, 1, time.time(), temperature=21.5).to_json()
        self.client.publish(f"iotpipe/{self.device}/telemetry", body, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def locked(procs: Procs, tmp_path: Path) -> Broker:
    return start_broker(procs, tmp_path / "broker")


@pytest.fixture
def board(locked: Broker) -> Iterator[WifiBoard]:
    creds, _made = auth.add_board(locked.data, "garden")
    wait_until(lambda: reload.running_pid(locked.data), 10, "the broker's pid file")
    assert reload.reload(locked.data, "the new login").reloaded
    wait_until(lambda: _logs_in(locked, creds), 10, "the board's login after the reload")
    made = WifiBoard(locked, "garden", creds)
    yield made
    made.close()


def _logs_in(broker: Broker, creds: auth.Credentials) -> bool:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.username_pw_set(creds.user, creds.password)
    answer: list[bool] = []
    client.on_connect = lambda c, u, f, reason, p: answer.append(not reason.is_failure)
    client.connect("127.0.0.1", broker.port)
    for _ in range(20):
        client.loop(0.05)
        if answer:
            break
    client.disconnect()
    return answer == [True]


def test_a_mqtt311_wifi_board_answers_a_dashboard_command(
    procs: Procs, locked: Broker, board: WifiBoard, tmp_path: Path
) -> None:
    # --data beside the broker's: the dashboard finds its own login in tmp_path/broker.
    dash = start_dashboard(procs, locked, tmp_path / "dash", "--command-timeout", "3")
    board.send_reading()
    wait_until(lambda: dash.get("/api/devices")[1], 10, "the board's reading in the dashboard")
    url = dash.url + "/api/devices/garden/commands"
    status, body = http(url, {"cmd": "ping"}, token=dash.token)
    assert status == 200, body
    assert body["ok"] is True and body["result"] == {"pong": "ping"}
    request = board.requests[0]
    assert request["reply_to"].startswith("iotpipe/dashboard/") and request["cmd"] == "ping"
    status, body = http(url, {"cmd": "info"}, token=dash.token)
    assert status == 200 and body["result"] == {"pong": "info"}
    assert board.requests[1]["id"] != request["id"], "each request has an id of its own"


def test_the_bridge_takes_the_dashboards_request_and_prefers_the_response_topic() -> None:
    payload = json.dumps(
        {"id": "a1b2", "cmd": "read", "args": {}, "reply_to": "iotpipe/dashboard/d/reply"}
    ).encode()
    route = route_for(payload, "iotpipe/dashboard/d/reply", b"a1b2", "iotpipe/x/reply")
    assert route == Route("iotpipe/dashboard/d/reply", b"a1b2")
    request = parse_request(payload, route)
    assert (request.client_id, request.cmd, request.args) == ("a1b2", "read", {})
