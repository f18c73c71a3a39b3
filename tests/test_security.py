"""The locked-down broker that `iotpipe broker` runs by default, against the real Mosquitto:
who may connect, and that each role can do exactly what its ACL allows."""

from __future__ import annotations

import ssl
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.conftest import (
    Broker,
    Procs,
    Subscriber,
    free_port,
    port_open,
    start_broker,
    wait_until,
)


@pytest.fixture
def locked(procs: Procs, tmp_path: Path) -> Broker:
    return start_broker(procs, tmp_path / "broker")


class Client:
    """A paho client that records the broker's answers: CONNACK, SUBACK, PUBACK."""

    def __init__(self, port: int, login: tuple[str, str] | None) -> None:
        self.connack: list[ReasonCode] = []
        self.suback: list[ReasonCode] = []
        self.puback: list[ReasonCode] = []
        self.messages: list[mqtt.MQTTMessage] = []
        self.lock = threading.Lock()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if login is not None:
            client.username_pw_set(*login)
        client.on_connect = lambda c, u, f, reason, p: self.connack.append(reason)
        client.on_subscribe = lambda c, u, mid, codes, p: self.suback.extend(codes)
        client.on_publish = lambda c, u, mid, reason, p: self.puback.append(reason)
        client.on_message = lambda c, u, m: self.messages.append(m)
        client.connect("127.0.0.1", port)
        client.loop_start()
        self.client = client
        wait_until(lambda: self.connack, 10, "CONNACK")

    @property
    def accepted(self) -> bool:
        return not self.connack[0].is_failure

    def subscribe(self, topic: str) -> ReasonCode:
        before = len(self.suback)
        self.client.subscribe(topic, qos=1)
        wait_until(lambda: len(self.suback) > before, 10, f"SUBACK for {topic}")
        return self.suback[-1]

    def publish(self, topic: str, payload: bytes = b"x") -> ReasonCode:
        before = len(self.puback)
        self.client.publish(topic, payload, qos=1)
        wait_until(lambda: len(self.puback) > before, 10, f"PUBACK for {topic}")
        return self.puback[-1]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def clients(locked: Broker) -> Iterator[dict[str, Client]]:
    made = {role: Client(locked.port, locked.credentials(role)) for role in
            ("bridge", "dashboard", "reader")}  # fmt: skip
    yield made
    for client in made.values():
        client.close()


def _device() -> str:
    return f"dev-{uuid.uuid4().hex[:8]}"


def test_anonymous_connection_is_refused(locked: Broker) -> None:
    client = Client(locked.port, None)
    try:
        assert not client.accepted
        assert client.connack[0].value == 135  # not authorised
    finally:
        client.close()


def test_wrong_password_is_refused(locked: Broker) -> None:
    user, _ = locked.credentials("bridge")
    client = Client(locked.port, (user, "not-the-password"))
    try:
        assert not client.accepted
        assert client.connack[0].value in (134, 135)
    finally:
        client.close()


def test_credentials_are_private_files_made_once(locked: Broker, procs: Procs) -> None:
    assert "created MQTT users" in locked.proc.output()
    for name in ("passwd", "acl", "credentials/bridge.json", "credentials/reader.json"):
        assert stat.S_IMODE((locked.data / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((locked.data / "credentials").stat().st_mode) == 0o700
    before = locked.credentials("bridge")
    locked.proc.stop()
    again = start_broker(procs, locked.data)
    assert again.credentials("bridge") == before
    assert "created MQTT users" not in again.proc.output()
    assert Client(again.port, before).accepted


def test_every_role_logs_in(clients: dict[str, Client]) -> None:
    assert all(c.accepted for c in clients.values())


def test_the_bridge_publishes_readings_and_reads_commands_only(
    clients: dict[str, Client],
) -> None:
    bridge, dashboard, reader = clients["bridge"], clients["dashboard"], clients["reader"]
    device = _device()
    assert not reader.subscribe("iotpipe/#").is_failure
    # Mosquitto 2.0 answers any SUBSCRIBE with a grant and applies the read ACL to every
    # message it would deliver: subscribed to `#`, the bridge still gets commands only.
    bridge.subscribe("#")
    for kind in ("telemetry", "status", "meta", "event", "reply"):
        assert not bridge.publish(f"iotpipe/{device}/{kind}").is_failure, kind
    assert not bridge.publish("iotpipe/bridge/host-tty/status").is_failure
    assert not bridge.publish(f"homeassistant/sensor/{device}/config").is_failure
    wait_until(lambda: len(reader.messages) >= 6, 10, "the bridge's messages at the reader")
    assert bridge.publish(f"iotpipe/{device}/cmd").is_failure
    assert bridge.publish(f"iotpipe/{device}/alert").is_failure
    assert not dashboard.publish(f"iotpipe/{device}/cmd", b"{}").is_failure
    wait_until(lambda: bridge.messages, 10, "the command at the bridge")
    assert [m.topic for m in bridge.messages] == [f"iotpipe/{device}/cmd"]


def test_the_dashboard_reads_readings_and_sends_commands_and_alerts_only(
    clients: dict[str, Client],
) -> None:
    dashboard, bridge = clients["dashboard"], clients["bridge"]
    device = _device()
    dashboard.subscribe("#")  # granted, but only what it may read is delivered
    assert not dashboard.publish(f"iotpipe/{device}/cmd").is_failure
    assert not dashboard.publish(f"iotpipe/{device}/alert").is_failure
    for kind in ("telemetry", "status", "meta", "event", "reply"):
        assert dashboard.publish(f"iotpipe/{device}/{kind}").is_failure, kind
    assert dashboard.publish("homeassistant/sensor/x/config").is_failure
    bridge.publish(f"iotpipe/{device}/cmd")  # refused: not the bridge's to send
    bridge.publish(f"iotpipe/{device}/telemetry")
    wait_until(lambda: dashboard.messages, 10, "the reading at the dashboard")
    assert [m.topic for m in dashboard.messages] == [f"iotpipe/{device}/telemetry"]


def test_a_denied_reading_reaches_nobody(clients: dict[str, Client], locked: Broker) -> None:
    device = _device()
    watcher = Subscriber(locked.port, f"iotpipe/{device}/#", locked.credentials("reader"))
    try:
        clients["dashboard"].publish(f"iotpipe/{device}/telemetry", b"forged")
        clients["reader"].publish(f"iotpipe/{device}/telemetry", b"forged")
        clients["bridge"].publish(f"iotpipe/{device}/telemetry", b"real")
        wait_until(lambda: watcher.on("/telemetry"), 10, "the real reading")
        assert [m.payload for m in watcher.on("/telemetry")] == [b"real"]
    finally:
        watcher.close()


def test_the_reader_reads_everything_and_publishes_nothing(clients: dict[str, Client]) -> None:
    reader = clients["reader"]
    device = _device()
    assert not reader.subscribe("iotpipe/#").is_failure
    assert not reader.subscribe("homeassistant/#").is_failure
    for kind in ("telemetry", "status", "meta", "event", "reply", "cmd", "alert"):
        assert reader.publish(f"iotpipe/{device}/{kind}").is_failure, kind
    assert reader.publish("homeassistant/status").is_failure
    assert reader.publish("other/topic").is_failure


@pytest.fixture
def tls_broker(procs: Procs, tmp_path: Path) -> tuple[Broker, int]:
    tls_port = free_port()
    broker = start_broker(procs, tmp_path / "broker", extra=("--tls-port", str(tls_port)))
    wait_until(lambda: port_open(tls_port), 10, "the TLS listener")
    return broker, tls_port


def _tls_login(port: int, login: tuple[str, str], ca: Path | None) -> list[ReasonCode]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(*login)
    client.tls_set(ca_certs=str(ca) if ca else None, cert_reqs=ssl.CERT_REQUIRED)
    answer: list[ReasonCode] = []
    client.on_connect = lambda c, u, f, reason, p: answer.append(reason)
    try:
        client.connect("127.0.0.1", port)
        for _ in range(50):
            client.loop(0.1)
            if answer:
                break
    finally:
        client.disconnect()
    return answer


def test_a_client_that_trusts_the_generated_ca_logs_in_over_tls(
    tls_broker: tuple[Broker, int],
) -> None:
    broker, port = tls_broker
    ca = broker.data / "tls" / "ca.crt"
    assert stat.S_IMODE((broker.data / "tls" / "ca.key").stat().st_mode) == 0o600
    answer = _tls_login(port, broker.credentials("reader"), ca)
    assert answer and not answer[0].is_failure


def test_a_client_that_does_not_trust_the_ca_cannot_connect(
    tls_broker: tuple[Broker, int], tmp_path: Path
) -> None:
    broker, port = tls_broker
    with pytest.raises(ssl.SSLError):
        _tls_login(port, broker.credentials("reader"), None)  # the system's CAs only
    other = start_broker_elsewhere(tmp_path)
    with pytest.raises(ssl.SSLError):
        _tls_login(port, broker.credentials("reader"), other)


def start_broker_elsewhere(tmp_path: Path) -> Path:
    """Another installation's CA: valid, but not the one that signed this broker."""
    from iotpipe.broker import tls

    return tls.ensure(tmp_path / "elsewhere", []) / "ca.crt"


def test_the_sub_command_reads_over_tls_with_the_reader_credentials(
    tls_broker: tuple[Broker, int], procs: Procs
) -> None:
    broker, port = tls_broker
    sub = procs.iotpipe(
        "sub", "sub", "--broker", f"mqtts://localhost:{port}",
        "--mqtt-credentials", str(broker.data / "credentials" / "reader.json"),
        "--mqtt-ca", str(broker.data / "tls" / "ca.crt"),
    )  # fmt: skip
    wait_until(lambda: "# mqtts://" in sub.output() or sub.popen.poll() is not None, 15, "sub")
    assert sub.popen.poll() is None, sub.output()


def test_a_bridge_beside_the_broker_finds_its_own_login(
    locked: Broker, procs: Procs, tmp_path: Path
) -> None:
    """`--data` shared with the broker: no password typed, none on the command line."""
    from tests.conftest import start_bridge
    from tests.test_pipeline import FakeWire, _reading

    watcher = Subscriber(locked.port, "iotpipe/+/telemetry", locked.credentials("reader"))
    board = FakeWire(tmp_path / "tty")
    try:
        bridge = start_bridge(
            procs, tmp_path, tmp_path / "tty", locked.url, "--device-id", "beside"
        )
        wait_until(lambda: "port_open" in bridge.output(), 10, "the port open")
        board.send(_reading(0, "beside"))
        wait_until(lambda: watcher.on("beside/telemetry"), 15, "the reading")
    finally:
        watcher.close()
