"""A board on Wi-Fi: the firmware's own MQTT client and its loops, run by the real
MicroPython unix port against the real Mosquitto (and, for the exact bytes, against a
scripted socket on loopback)."""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from iotpipe import topics
from iotpipe.board.virtual import find_micropython, firmware_dir
from iotpipe.dashboard.payloads import parse_meta
from iotpipe.mqttwire.discovery import board_from_meta
from tests.conftest import (
    MQTT_VECTORS,
    ROOT,
    Broker,
    Proc,
    Procs,
    Subscriber,
    free_port,
    start_broker,
    start_tls_broker,
    wait_until,
)

SCRIPTS = ROOT / "tests" / "firmware"


def run_micropython(script: str, *args: str, cwd: Path | None = None) -> str:
    # .frozen: the modules built into the port (ssl among them), on sys.path by default.
    env = {**os.environ, "MICROPYPATH": f"{firmware_dir()}:{SCRIPTS}:.frozen"}
    result = subprocess.run(
        [find_micropython(), str(SCRIPTS / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )
    assert result.returncode in (0, 3), result.stdout + result.stderr
    return result.stdout


def board_login(broker: Broker, device: str) -> tuple[str, str]:
    """The board's own login, made by `iotpipe board login` as a user makes it (which also
    makes the running broker reload its password file and ACL)."""
    done = subprocess.run(
        [sys.executable, "-m", "iotpipe", "board", "login", "--device-id", device,
         "--data", str(broker.data)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    body = json.loads((broker.data / "credentials" / "boards" / f"{device}.json").read_text())
    return str(body["user"]), str(body["password"])


def start_wifi_board(
    procs: Procs, broker: Broker, device: str, *extra: str, rate: float = 10.0
) -> Proc:
    return procs.iotpipe(
        f"board-{device}",
        "board",
        "virtual",
        "--transport",
        "mqtt",
        "--broker",
        broker.url,
        "--device-id",
        device,
        "--rate",
        str(rate),
        *extra,
    )


def telemetry(sub: Subscriber) -> list[topics.Telemetry]:
    return [topics.parse_telemetry(m.payload) for m in sub.on("/telemetry")]


def answers(sub: Subscriber, suffix: str) -> dict[object, dict[str, object]]:
    return {a["id"]: a for a in (json.loads(m.payload) for m in sub.on(suffix))}


# --- the client's bytes --------------------------------------------------------------


def test_payloads_and_request_decoding_match_the_shared_vectors_under_micropython() -> None:
    out = run_micropython("run_mqtt_vectors.py", str(MQTT_VECTORS))
    assert "failed 0" in out, out
    assert int(re.search(r"checked (\d+)", out).group(1)) >= 30  # type: ignore[union-attr]


def test_remaining_length_backlog_and_rtc_state_under_micropython() -> None:
    out = run_micropython("run_mqtt_units.py")
    assert "failed 0" in out
    # The table of MQTT 3.1.1 section 2.2.3, at every boundary.
    for n, encoded in [(0, "00"), (127, "7f"), (128, "8001"), (16383, "ff7f")]:
        assert f"len {n} {encoded}\n" in out
    for n, encoded in [(16384, "808001"), (2097151, "ffff7f"), (268435455, "ffffff7f")]:
        assert f"len {n} {encoded}\n" in out


def _packet(conn: socket.socket) -> bytes:
    head = conn.recv(1)
    length, shift, raw = 0, 0, b""
    while True:
        b = conn.recv(1)
        raw += b
        length |= (b[0] & 0x7F) << shift
        shift += 7
        if not b[0] & 0x80:
            break
    body = b""
    while len(body) < length:
        body += conn.recv(length - len(body))
    return head + raw + body


def _scripted_broker(server: socket.socket, seen: list[bytes]) -> None:
    conn, _ = server.accept()
    with conn:
        while True:
            packet = _packet(conn)
            seen.append(packet)
            kind = packet[0] & 0xF0
            if kind == 0x10:
                conn.sendall(b"\x20\x02\x01\x00")  # CONNACK, session present
            elif kind == 0x30 and packet[0] & 0x06:
                conn.sendall(b"\x40\x02" + packet[-8:-6])  # PUBACK with the packet id
            elif kind == 0x80:
                conn.sendall(b"\x90\x03" + packet[2:4] + b"\x01")
            elif kind == 0xC0:
                conn.sendall(b"\xd0\x00")
            elif kind == 0xE0:
                return


def _s(text: str) -> bytes:
    return len(text).to_bytes(2, "big") + text.encode()


def test_client_writes_exactly_the_mqtt_3_1_1_packets() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []
    thread = threading.Thread(target=_scripted_broker, args=(server, seen), daemon=True)
    thread.start()
    out = run_micropython("run_mqtt_client.py", "bytes", str(server.getsockname()[1]))
    thread.join(10)
    server.close()
    assert "session True" in out and "granted 1" in out and "pongs 1" in out
    will = _s("b/fw-1/status") + _s("offline")
    connect_body = b"\x00\x04MQTT\x04" + bytes([0x80 | 0x40 | 0x20 | 0x08 | 0x04]) + b"\x00\x1e"
    connect_body += _s("fw-1") + will + _s("u") + _s("pw")
    qos0 = _s("b/fw-1/telemetry") + b"x" * 200
    qos1 = _s("b/fw-1/status") + b"\x00\x01" + b"online"
    assert seen == [
        bytes([0x10, len(connect_body)]) + connect_body,
        b"\x30" + bytes([len(qos0) & 0x7F | 0x80, len(qos0) >> 7]) + qos0,  # two-byte length
        bytes([0x33, len(qos1)]) + qos1,  # QoS 1, retained
        bytes([0x82, 2 + 2 + 10 + 1]) + b"\x00\x02" + _s("b/fw-1/cmd") + b"\x01",
        b"\xc0\x00",
        b"\xe0\x00",
    ]


# --- against the real Mosquitto ------------------------------------------------------


def test_client_connects_with_credentials_and_qos1_gets_its_puback(
    procs: Procs, tmp_path: Path
) -> None:
    broker = start_broker(procs, tmp_path / "broker")
    user, password = board_login(broker, "fw-login")
    sub = Subscriber(broker.port, "iotpipe/fw-login/#", broker.credentials("reader"))
    try:
        out = run_micropython("run_mqtt_client.py", "login", str(broker.port), user, password)
        assert "puback" in out
        wait_until(lambda: sub.on("/telemetry"), 5, "the QoS 1 message")
        refused = run_micropython("run_mqtt_client.py", "login", str(broker.port), user, "wrong")
        assert "refused: connection refused: not authorised" in refused or (
            "bad user name or password" in refused
        )
    finally:
        sub.close()


def _der(pem: Path, out: Path) -> Path:
    out.write_bytes(ssl.PEM_cert_to_DER_cert(pem.read_text()))
    return out


def test_over_tls_the_client_trusts_the_brokers_ca_and_nothing_else(
    procs: Procs, tmp_path: Path
) -> None:
    broker, tls = start_tls_broker(procs, tmp_path / "broker")
    user, password = board_login(broker, "fw-login")
    ca = _der(broker.data / "tls" / "ca.crt", tmp_path / "ca.der")
    sub = Subscriber(broker.port, "iotpipe/fw-login/#", broker.credentials("reader"))
    try:
        out = run_micropython("run_mqtt_client.py", "tls", str(tls), user, password, str(ca))
        assert "puback" in out
        wait_until(lambda: sub.on("/telemetry"), 5, "the QoS 1 message over TLS")
        # The whole firmware as a virtual board on Wi-Fi, given the CA as deploy gives it.
        sub.messages.clear()
        procs.iotpipe("board-tls", "board", "virtual", "--transport", "mqtt",
                      "--broker", f"mqtts://localhost:{tls}",
                      "--mqtt-ca", str(broker.data / "tls" / "ca.crt"),
                      "--device-id", "fw-login", "--mqtt-user", user,
                      "--mqtt-password", password, "--rate", "10")  # fmt: skip
        wait_until(lambda: len(telemetry(sub)) >= 3, 20, "the virtual board's readings")
    finally:
        sub.close()
    unsure = subprocess.run(
        [sys.executable, "-m", "iotpipe", "board", "virtual", "--transport", "mqtt",
         "--broker", f"mqtts://localhost:{tls}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert unsure.returncode == 1 and "needs --mqtt-ca FILE" in unsure.stderr, unsure.stderr
    # A broker whose certificate another CA signed (here: the client trusts that other CA
    # instead) is refused before the password is sent.
    other = tmp_path / "other"
    done = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
         str(other.with_suffix(".key")), "-out", str(other.with_suffix(".crt")),
         "-subj", "/CN=someone else", "-days", "1"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    stranger = _der(other.with_suffix(".crt"), tmp_path / "other.der")
    out = run_micropython("run_mqtt_client.py", "tls", str(tls), user, password, str(stranger))
    assert "refused:" in out and "not correctly signed by the trusted CA" in out, out
    assert "puback" not in out


def test_will_says_offline_when_the_board_drops_off(procs: Procs, tmp_path: Path) -> None:
    broker = start_broker(procs, tmp_path / "broker", insecure=True)
    sub = Subscriber(broker.port, "iotpipe/fw-will/status")
    try:
        assert "connected" in run_micropython("run_mqtt_client.py", "abrupt", str(broker.port))
        wait_until(lambda: [m.payload for m in sub.messages][-1:] == [b"offline"], 5, "will")
        assert [m.payload for m in sub.messages] == [b"online", b"offline"]
    finally:
        sub.close()


def test_a_reading_taken_before_the_clock_was_set_gets_its_own_time(
    procs: Procs, tmp_path: Path
) -> None:
    broker = start_broker(procs, tmp_path / "broker", insecure=True)
    sub = Subscriber(broker.port, "iotpipe/fw-clock/telemetry")
    try:
        out = run_micropython("run_mqtt_client.py", "clock", str(broker.port), cwd=tmp_path)
        wall = int(out.split("wall before connect ")[1].split()[0]) / 1000
        wait_until(lambda: len(sub.messages) == 2, 5, "two readings")
        first, second = telemetry(sub)
        assert abs(first.ts - (wall - 0.6)) < 0.1 and abs(second.ts - (wall - 0.3)) < 0.1
        assert second.uptime_ms - first.uptime_ms == pytest.approx(300, abs=30)
    finally:
        sub.close()


# --- the board on Wi-Fi, always on ---------------------------------------------------


def test_board_publishes_like_the_bridge_and_answers_requests(procs: Procs, tmp_path: Path) -> None:
    broker = start_broker(procs, tmp_path / "broker", insecure=True)
    sub = Subscriber(broker.port, "#")
    try:
        start_wifi_board(procs, broker, "wifi-a")
        wait_until(lambda: len(sub.on("/telemetry")) >= 3, 15, "telemetry")
        assert [m.payload for m in sub.on("wifi-a/status")] == [b"online"]
        late = Subscriber(broker.port, "iotpipe/wifi-a/meta")
        wait_until(lambda: late.messages, 5, "the retained meta")
        late.close()
        meta = late.messages[0]
        assert meta.retain and parse_meta("wifi-a", meta.payload).meta["interval_ms"] == 100
        # What the announcer makes Home Assistant's suggested_display_precision of.
        assert board_from_meta(meta.payload).decimals == {"temperature": 2, "humidity": 1}
        readings = telemetry(sub)
        # Wall-clock time from the board (not seconds since its boot); a loaded machine may
        # take a while to pass it on, hence the wide margin.
        assert readings[0].device == "wifi-a" and abs(readings[-1].ts - time.time()) < 60
        seqs = [r.seq for r in readings]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))

        ask = sub.client.publish
        ask("iotpipe/wifi-a/cmd", '{"id":"p1","cmd":"ping","reply_to":"asker/x/reply"}', 1)
        ask("iotpipe/wifi-a/cmd", '{"id":2,"cmd":"set","args":{"interval_ms":50}}', 1)
        ask("iotpipe/wifi-a/cmd", "this is not json", 1)
        ask("iotpipe/wifi-a/cmd", '{"id":"u1","cmd":"fly"}', 1)
        ask("iotpipe/wifi-a/cmd", '{"id":"r1","cmd":"read"}', 1)
        wait_until(lambda: len(sub.on("wifi-a/reply")) >= 4, 10, "answers")
        to_asker = answers(sub, "asker/x/reply")
        assert to_asker["p1"]["ok"] and "uptime_ms" in to_asker["p1"]["result"]
        got = answers(sub, "wifi-a/reply")
        assert got[2] == {"id": 2, "ok": True, "result": {"interval_ms": 50, "saved": False}}
        assert got[None]["ok"] is False and "not JSON" in got[None]["error"]
        assert got["u1"]["ok"] is False and "unknown command" in got["u1"]["error"]
        read_seq = got["r1"]["result"]["seq"]
        wait_until(lambda: read_seq in [r.seq for r in telemetry(sub)], 5, "the read reading")
        count = len(sub.on("/telemetry"))
        wait_until(lambda: len(sub.on("/telemetry")) - count >= 6, 10, "the board carrying on")
        # At 20 Hz now, by the board's own clock (wall-clock counts would measure the load).
        later = [r.uptime_ms for r in telemetry(sub) if r.seq > read_seq]
        assert min(b - a for a, b in itertools.pairwise(later)) < 100, later
    finally:
        sub.close()


def test_readings_buffered_during_a_broker_restart_are_delivered(
    procs: Procs, tmp_path: Path
) -> None:
    port = free_port()
    broker = start_broker(procs, tmp_path / "broker", port=port, insecure=True)
    sub = Subscriber(port, "iotpipe/wifi-r/#", session="test-keeper")
    try:
        board = start_wifi_board(procs, broker, "wifi-r", rate=20.0)
        wait_until(lambda: len(sub.on("/telemetry")) >= 5, 15, "telemetry")
        broker.proc.stop()
        last_before = max(r.seq for r in telemetry(sub))
        time.sleep(1.5)
        broker = start_broker(procs, tmp_path / "broker", port=port, insecure=True)
        wait_until(lambda: len(sub.on("/telemetry")) >= last_before + 40, 20, "more readings")
        # The board's duty ends at the PUBACK: a reading the stopping broker acknowledged
        # in its last moment may be lost to subscribers (one at most); every later one,
        # taken while the broker was away (~30 at 20 Hz), came from the board's buffer.
        after = sorted({r.seq for r in telemetry(sub)} - set(range(last_before + 1)))
        assert after[0] <= last_before + 2 and after == list(range(after[0], after[-1] + 1))
        assert [m.payload for m in sub.on("/status")][-1:] == [b"online"]
        assert board.popen.poll() is None
    finally:
        sub.close()


def test_a_full_buffer_drops_the_oldest_and_says_so(procs: Procs, tmp_path: Path) -> None:
    port = free_port()
    nobody = Broker(port, tmp_path, procs.start("idle", ["sleep", "60"]), insecure=True)
    board = start_wifi_board(procs, nobody, "wifi-o", "--buffer-max", "5", rate=20.0)
    # Three failed connects: 1 s + 2 s of backoff by the board's clock, ~60 readings at
    # 20 Hz however slowly this machine runs it.
    wait_until(lambda: board.output().count("broker unreachable") >= 3, 20, "3 failed connects")
    broker = start_broker(procs, tmp_path / "broker", port=port, insecure=True)
    sub = Subscriber(broker.port, "iotpipe/wifi-o/#")
    try:
        wait_until(lambda: sub.on("/event"), 20, "the drop report")
        report = json.loads(sub.on("/event")[0].payload)
        assert report["event"] == "buffer_overflow" and report["data"]["buffer_max"] == 5
        wait_until(lambda: len(sub.on("/telemetry")) >= 5, 5, "the kept readings")
        kept = [r.seq for r in telemetry(sub)][:5]
        dropped = report["data"]["readings_dropped"]
        assert dropped >= 20 and kept == list(range(dropped, dropped + 5)), (dropped, kept)
    finally:
        sub.close()


# --- battery mode --------------------------------------------------------------------


def test_battery_board_sleeps_keeps_seq_and_boot_and_gets_requests_at_wake(
    procs: Procs, tmp_path: Path
) -> None:
    broker = start_broker(procs, tmp_path / "broker", insecure=True)
    sub = Subscriber(broker.port, "#")
    try:
        board = start_wifi_board(procs, broker, "bat-1", "--deep-sleep", rate=2.0)
        wait_until(lambda: len(sub.on("/telemetry")) >= 2, 15, "two wakes")
        sub.client.publish("iotpipe/bat-1/cmd", '{"id":"q","cmd":"info","reply_to":"me/r"}', 1)
        wait_until(lambda: sub.on("me/r"), 5, "the answer at the next wake")
        wait_until(lambda: len(sub.on("/telemetry")) >= 4, 10, "more wakes")
        readings = telemetry(sub)
        assert len({r.boot for r in readings}) == 1, "one boot across the deep sleeps"
        assert [r.seq for r in readings] == list(range(len(readings)))
        ups = [r.uptime_ms for r in readings]
        assert all(450 <= b - a <= 600 for a, b in itertools.pairwise(ups)), ups
        info = json.loads(sub.on("me/r")[0].payload)["result"]
        assert info["boot"] == readings[0].boot
        assert len(sub.on("/meta")) == 1, "the meta once, not at every wake"
        assert "awake" in board.output()
    finally:
        sub.close()


def test_battery_board_keeps_readings_across_sleeps_while_the_broker_is_away(
    procs: Procs, tmp_path: Path
) -> None:
    port = free_port()
    nobody = Broker(port, tmp_path, procs.start("idle", ["sleep", "60"]), insecure=True)
    board = start_wifi_board(procs, nobody, "bat-2", "--deep-sleep", rate=5.0)

    def waiting() -> int:
        return max(map(int, re.findall(r"(\d+) readings waiting", board.output())), default=0)

    wait_until(lambda: waiting() >= 8, 15, "8 readings kept while the broker is away")
    broker = start_broker(procs, tmp_path / "broker", port=port, insecure=True)
    sub = Subscriber(broker.port, "iotpipe/bat-2/telemetry")
    try:
        wait_until(lambda: len(sub.messages) >= 8, 15, "the readings kept in RTC memory")
        seqs = [r.seq for r in telemetry(sub)]
        assert seqs[:8] == list(range(8)), seqs
    finally:
        sub.close()
