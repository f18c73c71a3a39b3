"""The bridge with real parts: Mosquitto, the firmware under MicroPython on a pty (or a
pty the test speaks for), and MQTT clients of both protocol versions."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.conftest import (
    Broker,
    Procs,
    free_port,
    port_open,
    start_bridge,
    start_virtual_board,
    wait_until,
)
from tests.test_pipeline import FakeWire, _reading


class Requester:
    """A client that asks boards things: MQTT 5 with a response topic, or MQTT 3.1.1."""

    def __init__(self, port: int, inbox: str, v5: bool = True) -> None:
        self.answers: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(inbox, qos=1)
        self.client.loop_start()
        assert ready.wait(10)
        self.inbox = inbox

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.answers.append(msg)

    def ask(self, topic: str, body: bytes, correlation: bytes | None = None) -> None:
        props = None
        if correlation is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = self.inbox
            props.CorrelationData = correlation
        self.client.publish(topic, body, qos=1, properties=props)

    def by_correlation(self) -> dict[bytes, dict[str, object]]:
        with self._lock:
            return {
                bytes(m.properties.CorrelationData): json.loads(m.payload)  # type: ignore[union-attr]
                for m in self.answers
                if hasattr(m.properties, "CorrelationData")
            }

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def online(subscribe, device: str) -> None:
    """The bridge said the board is online, so it has subscribed to the board's cmd topic
    (the subscription goes out first on the same connection)."""
    status = subscribe(f"iotpipe/{device}/status")
    wait_until(lambda: status.messages and status.messages[-1].payload == b"online", 20, device)


def test_commands_are_answered_on_the_response_topic_with_the_correlation_data(
    procs: Procs, broker: Broker, subscribe, tmp_path: Path
) -> None:
    link = tmp_path / "tty"
    start_virtual_board(procs, link, "cmd-1", 5.0)
    bridge = start_bridge(procs, tmp_path, link, broker.url)
    online(subscribe, "cmd-1")
    asker = Requester(broker.port, "answers/alice")
    try:
        topic = "iotpipe/cmd-1/cmd"
        asker.ask(topic, b'{"id":"1","cmd":"ping"}', b"c-ping")
        asker.ask(topic, b'{"id":"1","cmd":"info"}', b"c-info")  # the same id again
        asker.ask(topic, b'{"id":2,"cmd":"reboot"}', b"c-unknown")
        asker.ask(topic, b"{this is not json", b"c-junk")
        wait_until(lambda: len(asker.by_correlation()) == 4, 15, "four answers")
        got = asker.by_correlation()
        assert got[b"c-ping"]["ok"] and got[b"c-ping"]["id"] == "1"
        assert got[b"c-info"]["result"]["device"] == "cmd-1"  # type: ignore[index]
        assert got[b"c-unknown"] == {"id": 2, "ok": False, "error": got[b"c-unknown"]["error"]}
        assert "unknown command" in str(got[b"c-unknown"]["error"])
        assert got[b"c-junk"]["ok"] is False and "not JSON" in str(got[b"c-junk"]["error"])
    finally:
        asker.close()
    assert bridge.popen.poll() is None


def test_mqtt311_clients_get_answers_on_reply_to_or_the_reply_topic(
    procs: Procs, broker: Broker, subscribe, tmp_path: Path
) -> None:
    link = tmp_path / "tty"
    start_virtual_board(procs, link, "cmd-2", 5.0)
    start_bridge(procs, tmp_path, link, broker.url)
    online(subscribe, "cmd-2")
    mine = Requester(broker.port, "bob/inbox", v5=False)
    default = Requester(broker.port, "iotpipe/cmd-2/reply", v5=False)
    try:
        mine.ask("iotpipe/cmd-2/cmd", b'{"id":"b1","cmd":"ping","reply_to":"bob/inbox"}')
        default.ask("iotpipe/cmd-2/cmd", b'{"id":"d1","cmd":"ping"}')
        wait_until(lambda: mine.answers and default.answers, 15, "both answers")
        assert json.loads(mine.answers[0].payload)["id"] == "b1"
        assert [json.loads(m.payload)["id"] for m in default.answers] == ["d1"]
    finally:
        mine.close()
        default.close()


def test_a_slower_interval_set_by_command_reaches_the_meta_and_the_silence_timer(
    procs: Procs, broker: Broker, subscribe, tmp_path: Path
) -> None:
    # The bridge calls a board offline after three silent intervals: the interval it knows
    # must be the one just set, or a board asked to report every 2 s is "offline" at once.
    link = tmp_path / "tty"
    start_virtual_board(procs, link, "cmd-3", 10.0)
    start_bridge(procs, tmp_path, link, broker.url)
    online(subscribe, "cmd-3")
    meta, status = subscribe("iotpipe/cmd-3/meta"), subscribe("iotpipe/cmd-3/status")
    asker = Requester(broker.port, "carol/inbox", v5=False)
    try:
        asker.ask(
            "iotpipe/cmd-3/cmd",
            b'{"id":"s","cmd":"set","args":{"interval_ms":2000},"reply_to":"carol/inbox"}',
        )
        intervals = lambda: [json.loads(m.payload)["interval_ms"] for m in meta.messages]  # noqa: E731
        wait_until(lambda: intervals()[-1:] == [2000], 10, "the meta with the new interval")
        assert json.loads(asker.answers[0].payload)["result"]["interval_ms"] == 2000
        threading.Event().wait(1.5)  # 15 of the old intervals, under one of the new
        assert [m.payload for m in status.messages] == [b"online"]
    finally:
        asker.close()


def test_a_board_that_does_not_answer_gives_the_asker_a_timeout_error(
    procs: Procs, broker: Broker, subscribe, tmp_path: Path
) -> None:
    status = subscribe("iotpipe/mute/status")
    board = FakeWire(tmp_path / "tty")
    extra = ("--device-id", "mute", "--request-timeout", "0.5")
    bridge = start_bridge(procs, tmp_path, tmp_path / "tty", broker.url, *extra)
    wait_until(lambda: "port_open" in bridge.output(), 10, "the port open")
    board.send(_reading(0, "mute"))
    # Status comes after the bridge subscribed to its cmd topic (same connection, in order).
    wait_until(lambda: status.messages, 10, "the board online")
    asker = Requester(broker.port, "answers/carol")
    try:
        asker.ask("iotpipe/mute/cmd", b'{"id":"t","cmd":"ping"}', b"c-t")
        wait_until(lambda: asker.by_correlation(), 10, "the timeout answer")
        answer = asker.by_correlation()[b"c-t"]
        assert answer["ok"] is False and "timeout" in str(answer["error"])
        assert b'"cmd":"ping"' in os.read(board.master, 4096)  # it did go to the board
    finally:
        asker.close()


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


def test_gaps_quiet_boards_discovery_and_metrics(
    procs: Procs, broker: Broker, subscribe, tmp_path: Path
) -> None:
    sub = subscribe("#")
    board = FakeWire(tmp_path / "tty")
    port = free_port()
    extra = ("--device-id", "gappy", "--metrics", f"127.0.0.1:{port}")
    bridge = start_bridge(procs, tmp_path, tmp_path / "tty", broker.url, *extra)
    wait_until(lambda: "port_open" in bridge.output(), 10, "the port open")
    hello = {
        "type": "hello",
        "device": "gappy",
        "boot": "0a1b2c3d",
        "uptime_ms": 1,
        "fw": "0.2.0",
        "board": "fake",
        "sensors": ["sim"],
        "units": {"temperature": "°C"},
        "interval_ms": 100,
    }
    board.send(json.dumps(hello).encode() + b"\n")
    for seq in (0, 1, 5):
        board.send(_reading(seq, "gappy"))
    wait_until(lambda: len(sub.on("gappy/telemetry")) == 3, 10, "three readings")
    config = "homeassistant/sensor/gappy/temperature/config"
    wait_until(lambda: sub.on(config), 5, "discovery config")
    assert json.loads(sub.on(config)[-1].payload)["unit_of_measurement"] == "°C"
    assert [m.payload for m in sub.on("gappy/status")] == [b"online"]
    # This board cannot replay (it never answers): once the replay the jump asked for
    # times out, the gap is reported as lost before the bridge.
    gap = "readings_missing device=gappy boot=0a1b2c3d first=2 last=4 count=3 where=board"
    wait_until(lambda: gap in bridge.output(), 30, "the gap log line")
    wait_until(lambda: sub.on("gappy/event"), 10, "the gap event")
    (event,) = [json.loads(m.payload) for m in sub.on("gappy/event")]
    assert event["event"] == "readings_missing" and event["uptime_ms"] is None
    gap_data = {"boot": "0a1b2c3d", "first": 2, "last": 4, "count": 3, "where": "board"}
    assert event["data"] == gap_data
    text = _metrics(port)
    assert 'iotpipe_bridge_gaps_total{reason="board"} 1' in text
    assert 'iotpipe_bridge_missing_total{reason="board"} 3' in text
    assert "iotpipe_bridge_spooled_total 4" in text  # three readings and the gap event

    # No line for three intervals of 100 ms (plus slack): the board is offline.
    wait_until(lambda: sub.on("gappy/status")[-1].payload == b"offline", 10, "quiet board")
    board.send(_reading(6, "gappy"))
    wait_until(lambda: sub.on("gappy/status")[-1].payload == b"online", 10, "back online")

    # Home Assistant restarted: everything retained is published again.
    configs_before = len(sub.on(config))
    sub.client.publish("homeassistant/status", b"online")
    wait_until(lambda: len(sub.on(config)) > configs_before, 10, "discovery again")
    bridge_topics = {m.topic for m in sub.messages if m.topic.startswith("iotpipe/bridge/")}
    assert len(bridge_topics) == 1 and sub.on(bridge_topics.pop())[-1].payload == b"online"


def test_at_qos0_readings_are_published_without_a_spool(
    procs: Procs, broker: Broker, subscribe, tmp_path: Path
) -> None:
    sub = subscribe("iotpipe/fast/telemetry")
    board = FakeWire(tmp_path / "tty")
    extra = ("--device-id", "fast", "--qos", "0")
    bridge = start_bridge(procs, tmp_path, tmp_path / "tty", broker.url, *extra)
    wait_until(lambda: "port_open" in bridge.output(), 10, "the port open")
    board.send(_reading(0, "fast"))  # before MQTT is up: at QoS 0 it may be gone
    online(subscribe, "fast")
    board.send(b"".join(_reading(seq, "fast") for seq in range(1, 500)))
    wait_until(lambda: len(sub.on("/telemetry")) >= 499, 20, "every reading")
    readings = [json.loads(m.payload) for m in sub.messages]
    assert [r["seq"] for r in readings][-499:] == list(range(1, 500))
    assert readings[-1]["metrics"] == {"t": 499.5} and readings[-1]["uptime_ms"] == 4990
    assert all(m.qos == 0 and not m.retain for m in sub.messages)
    assert not (tmp_path / "bridge-spool").exists()
    assert bridge.popen.poll() is None


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificates(tmp: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=tmp)  # fmt: skip
    for name, extra in (("server", ["-addext", "subjectAltName=IP:127.0.0.1"]), ("client", [])):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", *extra, cwd=tmp)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-copy_extensions", "copy",
                 "-out", f"{name}.crt", cwd=tmp)  # fmt: skip


def test_tls_with_a_client_certificate_and_a_password_from_the_environment(
    procs: Procs, tmp_path: Path
) -> None:
    _certificates(tmp_path)
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(tmp_path / "passwd"), "bridge", "s3cret"], check=True
    )
    subprocess.run(["mosquitto_passwd", "-b", str(tmp_path / "passwd"), "sub", "sub"], check=True)
    plain, tls = free_port(), free_port()
    (tmp_path / "mosquitto.conf").write_text(
        f"user {getpass.getuser()}\n"  # as root, Mosquitto would switch to a user who cannot read
        f"per_listener_settings false\nallow_anonymous false\npassword_file {tmp_path}/passwd\n"
        f"listener {plain} 127.0.0.1\n"
        f"listener {tls} 127.0.0.1\ncafile {tmp_path}/ca.crt\ncertfile {tmp_path}/server.crt\n"
        f"keyfile {tmp_path}/server.key\nrequire_certificate true\n"
    )
    procs.start("mosquitto", ["/usr/sbin/mosquitto", "-c", str(tmp_path / "mosquitto.conf")])
    wait_until(lambda: port_open(plain) and port_open(tls), 10, "mosquitto")
    got: list[mqtt.MQTTMessage] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.username_pw_set("sub", "sub")
    sub.on_message = lambda c, u, m: got.append(m)
    sub.on_connect = lambda c, *a: c.subscribe("iotpipe/secure/telemetry", qos=1)
    sub.connect("127.0.0.1", plain)
    sub.loop_start()
    board = FakeWire(tmp_path / "tty")
    bridge = start_bridge(
        procs, tmp_path, tmp_path / "tty", f"mqtts://bridge@127.0.0.1:{tls}",
        "--device-id", "secure", "--mqtt-ca", str(tmp_path / "ca.crt"),
        "--mqtt-cert", str(tmp_path / "client.crt"), "--mqtt-key", str(tmp_path / "client.key"),
        env={"IOTPIPE_MQTT_PASSWORD": "s3cret"},
    )  # fmt: skip
    try:
        wait_until(lambda: "port_open" in bridge.output(), 10, "the port open")
        board.send(_reading(0, "secure"))
        wait_until(lambda: got, 15, "a reading over TLS")
        assert json.loads(got[0].payload)["device"] == "secure"
        assert "broker_connected broker=mqtts://bridge@127.0.0.1" in bridge.output()
        assert "s3cret" not in bridge.output()
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_a_spool_that_cannot_be_made_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    result = subprocess.run(
        [sys.executable, "-m", "iotpipe", "bridge", "--serial", "/dev/null",
         "--spool", str(tmp_path / "file" / "spool")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        result.stderr.startswith("iotpipe: cannot start the bridge") and "--spool" in result.stderr
    )
