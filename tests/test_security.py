"""The locked-down broker that `iotpipe broker` runs by default, against the real Mosquitto:
who may connect, and that each role can do exactly what its ACL allows."""

from __future__ import annotations

import json
import os
import pwd
import ssl
import stat
import subprocess
import sys
import threading
import time
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

    def __init__(
        self,
        port: int,
        login: tuple[str, str] | None,
        client_id: str = "",
        clean_start: bool = True,
    ) -> None:
        self.connack: list[ReasonCode] = []
        self.session_present = False
        self.suback: list[ReasonCode] = []
        self.puback: list[ReasonCode] = []
        self.messages: list[mqtt.MQTTMessage] = []
        self.lock = threading.Lock()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id, protocol=mqtt.MQTTv5)
        if login is not None:
            client.username_pw_set(*login)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda c, u, mid, codes, p: self.suback.extend(codes)
        client.on_publish = lambda c, u, mid, reason, p: self.puback.append(reason)
        client.on_message = lambda c, u, m: self.messages.append(m)
        client.connect("127.0.0.1", port, clean_start=clean_start)
        client.loop_start()
        self.client = client
        wait_until(lambda: self.connack, 10, "CONNACK")

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        self.session_present = flags.session_present
        self.connack.append(reason)

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


# --- Boards on Wi-Fi: a login per device, reloaded without a restart -----------------------


def _board_command(verb: str, data: Path, device: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iotpipe", "board", verb, "--device-id", device,
         "--data", str(data)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _board_login(data: Path, device: str) -> subprocess.CompletedProcess[str]:
    return _board_command("login", data, device)


def _board(broker: Broker, device: str) -> tuple[str, str]:
    body = json.loads((broker.data / "credentials" / "boards" / f"{device}.json").read_text())
    return str(body["user"]), str(body["password"])


def test_the_locked_config_names_the_pid_file_that_reload_reads(tmp_path: Path) -> None:
    from iotpipe.broker import mosquitto, reload

    text = mosquitto.render_config(1883, "127.0.0.1", tmp_path)
    assert f"pid_file {reload.pid_path(tmp_path)}\n" in text
    assert "pid_file" not in mosquitto.render_config(1883, "127.0.0.1", tmp_path, insecure=True)


def test_a_board_added_while_the_broker_runs_logs_in_without_a_restart(locked: Broker) -> None:
    pid = locked.proc.popen.pid  # `iotpipe broker` execs mosquitto: the same process
    from iotpipe.broker import reload

    wait_until(lambda: reload.running_pid(locked.data) == pid, 10, "the pid file")
    device = _device()
    done = _board_login(locked.data, device)
    assert done.returncode == 0, done.stderr
    assert f"told the running broker (pid {pid}) to reload" in done.stdout
    user, password = _board(locked, device)
    assert user == f"iotpipe-board-{device}" and password in done.stdout  # shown this once
    board_file = locked.data / "credentials" / "boards" / f"{device}.json"
    assert stat.S_IMODE(board_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((locked.data / "passwd").stat().st_mode) == 0o600
    wait_until(lambda: Client(locked.port, (user, password)).accepted, 10, "the reloaded login")
    assert locked.proc.popen.poll() is None and pid == reload.running_pid(locked.data)

    again = _board_login(locked.data, device)
    assert again.returncode == 0 and "already has an MQTT login" in again.stdout
    assert password not in again.stdout and _board(locked, device) == (user, password)


def test_a_board_may_publish_and_read_its_own_topics_only(
    locked: Broker, clients: dict[str, Client]
) -> None:
    mine, other = _device(), _device()
    assert _board_login(locked.data, mine).returncode == 0
    board = None
    try:
        wait_until(lambda: Client(locked.port, _board(locked, mine)).accepted, 10, "login")
        board = Client(locked.port, _board(locked, mine))
        board.subscribe("#")  # granted; only its own commands are delivered
        for kind in ("telemetry", "status", "meta", "event", "reply"):
            assert not board.publish(f"iotpipe/{mine}/{kind}").is_failure, kind
        assert not board.publish("iotpipe/dashboard/iotpipe-dashboard-x/reply").is_failure
        for topic in (f"iotpipe/{other}/telemetry", f"iotpipe/{other}/status",
                      f"iotpipe/{mine}/cmd", f"iotpipe/{mine}/alert",
                      "iotpipe/bridge/x/status", "homeassistant/sensor/x/config"):  # fmt: skip
            assert board.publish(topic).value == 135, topic  # not authorised
        dashboard = clients["dashboard"]
        dashboard.publish(f"iotpipe/{other}/cmd", b"not yours")
        dashboard.publish(f"iotpipe/{mine}/cmd", b"yours")
        wait_until(lambda: board.messages, 10, "its own command")
        time.sleep(0.3)  # the other device's command, had it been delivered, is here by now
        assert [(m.topic, m.payload) for m in board.messages] == [(f"iotpipe/{mine}/cmd", b"yours")]
    finally:
        if board is not None:
            board.close()


def test_a_revoked_board_is_dropped_at_once_and_refused_after(locked: Broker) -> None:
    from iotpipe.broker import reload

    pid = locked.proc.popen.pid
    wait_until(lambda: reload.running_pid(locked.data) == pid, 10, "the pid file")
    lost, kept = _device(), _device()
    for device in (lost, kept):
        assert _board_login(locked.data, device).returncode == 0
    wait_until(lambda: Client(locked.port, _board(locked, kept)).accepted, 10, "the logins")
    login = _board(locked, lost)
    board = Client(locked.port, login)
    try:
        assert board.accepted and board.client.is_connected()
        done = _board_command("revoke", locked.data, lost)
        assert done.returncode == 0, done.stderr
        assert f"removed the MQTT login of board {lost}" in done.stdout
        assert f"told the running broker (pid {pid}) to reload" in done.stdout
        wait_until(lambda: not board.client.is_connected(), 10, "the broker dropping the board")
    finally:
        board.close()
    assert not Client(locked.port, login).accepted
    assert Client(locked.port, _board(locked, kept)).accepted
    assert f"iotpipe-board-{lost}" not in (locked.data / "passwd").read_text()
    assert f"iotpipe-board-{lost}" not in (locked.data / "acl").read_text()
    assert locked.proc.popen.poll() is None

    again = _board_command("revoke", locked.data, lost)
    assert again.returncode == 1
    assert again.stderr.startswith(f"iotpipe: board '{lost}' has no login in "), again.stderr
    assert f"(boards with one: {kept})" in again.stderr


def test_board_logins_and_a_revoke_made_while_the_broker_is_down_hold_after_a_restart(
    locked: Broker, procs: Procs
) -> None:
    devices, gone = [_device(), _device()], _device()
    for device in (*devices, gone):
        assert _board_login(locked.data, device).returncode == 0
    gone_login = _board(locked, gone)
    locked.proc.stop()
    assert not (locked.data / "mosquitto.pid").exists(), "removed on a clean exit"
    done = _board_login(locked.data, devices[0])
    assert "the new login takes effect when" in done.stdout, done.stdout
    done = _board_command("revoke", locked.data, gone)
    assert "the removal takes effect when" in done.stdout, done.stdout
    again = start_broker(procs, locked.data)
    for device in devices:
        assert Client(again.port, _board(again, device)).accepted, device
    assert not Client(again.port, gone_login).accepted
    acl = (locked.data / "acl").read_text()
    assert all(f"user iotpipe-board-{d}\n" in acl for d in devices)


def test_a_board_login_needs_a_locked_broker_and_a_good_device_id(tmp_path: Path) -> None:
    done = _board_login(tmp_path, "bad/id")
    assert done.returncode == 1 and "must match" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    for verb in ("login", "revoke"):
        done = _board_command(verb, tmp_path, "garden")
        assert done.returncode == 1 and done.stderr.startswith("iotpipe: no broker credentials")


def test_a_tampered_board_file_grants_nothing_else(tmp_path: Path) -> None:
    from iotpipe.broker import auth
    from iotpipe.errors import UserError

    auth.ensure(tmp_path, "iotpipe", "homeassistant")
    creds, made = auth.add_board(tmp_path, "garden")
    assert made and creds.device == "garden"
    path = auth.board_file(tmp_path, "garden")
    path.write_text(json.dumps({"role": "board", "device": "garden", "user": "iotpipe-bridge",
                                "password": "x"}))  # fmt: skip
    with pytest.raises(UserError, match="is not a board login"):
        auth.ensure(tmp_path, "iotpipe", "homeassistant")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand files to another user")
def test_a_login_added_as_root_stays_readable_by_the_brokers_own_user(tmp_path: Path) -> None:
    """Mosquitto reads passwd and acl after switching to its user: root must not take them."""
    from iotpipe.broker import auth

    data = tmp_path / "broker"
    data.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(data, nobody.pw_uid, nobody.pw_gid)
    auth.ensure(data, "iotpipe", "homeassistant")
    auth.add_board(data, "garden")
    for name in ("passwd", "acl", "credentials", "credentials/boards",
                 "credentials/boards/garden.json"):  # fmt: skip
        assert (data / name).stat().st_uid == nobody.pw_uid, name
