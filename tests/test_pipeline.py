"""End to end with real parts: Mosquitto, the firmware under MicroPython on a pty, the
bridge process, and an MQTT subscriber like `mosquitto_sub -t 'iotpipe/#' -v`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tty
from pathlib import Path

from tests.conftest import Broker, Procs, start_virtual_board, wait_until


def test_board_readings_reach_a_subscriber_with_status_and_meta(
    procs: Procs, broker: Broker, subscribe, tmp_path: Path
) -> None:
    sub = subscribe("iotpipe/#")
    link = tmp_path / "tty"
    start_virtual_board(procs, link, "e2e-1", 20.0)
    bridge = procs.iotpipe(
        "bridge", "bridge", "--serial", str(link), "--broker", broker.url, "--data", str(tmp_path)
    )
    wait_until(lambda: len(sub.on("/telemetry")) >= 10, 20, "ten readings")
    readings = [json.loads(m.payload) for m in sub.on("e2e-1/telemetry")]
    first = readings[0]
    assert set(first) >= {"device", "boot", "seq", "ts", "uptime_ms", "metrics"}
    assert first["device"] == "e2e-1" and isinstance(first["ts"], float)
    # Each once, none missing. Not strictly in order: the bridge asks the board to replay what
    # it wrote before the port was open, and a live reading may come before that answer.
    seqs = sorted(r["seq"] for r in readings)
    assert seqs == list(range(seqs[0], seqs[0] + len(readings)))
    assert all(m.qos == 1 for m in sub.on("/telemetry"))
    wait_until(lambda: sub.on("e2e-1/meta"), 10, "meta")
    meta = json.loads(sub.on("e2e-1/meta")[-1].payload)
    assert meta["units"]["temperature"] == "°C" and meta["board"] == "unix"
    assert [m.payload for m in sub.on("e2e-1/status")][-1] == b"online"

    # A bridge that dies without a word: the broker publishes its will.
    bridge.stop(signal.SIGKILL)
    wait_until(lambda: sub.on("e2e-1/status")[-1].payload == b"offline", 60, "will message")
    late = subscribe("iotpipe/e2e-1/status")  # retained, so a newcomer learns it too
    wait_until(lambda: late.messages, 10, "retained status")
    assert late.messages[-1].payload == b"offline" and late.messages[-1].retain


class FakeWire:
    """The test's own end of a real pty: plays a board that sends any bytes we like."""

    def __init__(self, link: Path) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        link.symlink_to(os.ttyname(self.slave))

    def send(self, data: bytes) -> None:
        os.write(self.master, data)


def _reading(seq: int, device: str = "noisy") -> bytes:
    return (
        b'{"type":"reading","device":"%s","boot":"0a1b2c3d","seq":%d,"uptime_ms":%d,'
        b'"metrics":{"t":%d.5}}\n' % (device.encode(), seq, seq * 10, seq)
    )


def test_bad_lines_are_counted_and_skipped_and_good_ones_around_them_delivered(
    procs: Procs, broker: Broker, subscribe, tmp_path: Path
) -> None:
    sub = subscribe("iotpipe/noisy/telemetry")
    board = FakeWire(tmp_path / "tty")
    bridge = procs.iotpipe(
        "bridge",
        "bridge",
        "--serial",
        str(tmp_path / "tty"),
        "--broker",
        broker.url,
        "--device-id",
        "noisy",
        "--data",
        str(tmp_path),
    )
    # Speak once the bridge has the port open, so every line below is one it reads.
    wait_until(lambda: "port_open" in bridge.output(), 10, "the bridge to open the port")
    junk = [
        b"MicroPython v1.23.0 on 2024-06-02; ESP32 module with ESP32\r\n",
        b"\xff\xfe\x00garbage at the wrong baud rate\x80\n",
        b'{"type":"reading","device":"noisy","boot":"0a1b2c3d","seq":1}\n',
        b'{"type":"reading","device":"noisy","boot":"0a1b2c3d","seq":1,"uptime_ms":1,'
        b'"metrics":{"t":"hot"}}\n',
        b'{"type":"reading","device":"noisy","boot":"0a1b2c3d","seq":1,"uptime_ms":1,'
        b'"metrics":{"t":NaN}}\n',
        b"{" + b"x" * 3000 + b"}\n",
        b'{"type":"reading","device":"a/#","boot":"0a1b2c3d","seq":1,"uptime_ms":1,'
        b'"metrics":{"t":1}}\n',
    ]
    expected = []
    for seq, bad in enumerate(junk * 3):
        board.send(bad)
        board.send(_reading(seq))
        expected.append(seq)
    wait_until(lambda: len(sub.messages) >= len(expected), 20, "every good reading")
    got = [json.loads(m.payload)["seq"] for m in sub.messages]
    assert got == expected
    bridge.stop()
    counted = bridge.output().rsplit("counters: ", 1)[1]
    for reason in (
        "not_json",
        "not_utf8",
        "missing_field",
        "not_numeric",
        "not_finite",
        "too_long",
        "bad_device",
    ):
        assert f"'rejected{{{reason}}}': 3" in counted, reason


def test_bridge_reports_an_unreachable_broker_in_one_line_and_keeps_trying(
    procs: Procs, tmp_path: Path
) -> None:
    board = FakeWire(tmp_path / "tty")
    bridge = procs.iotpipe(
        "bridge",
        "bridge",
        "--serial",
        str(tmp_path / "tty"),
        "--broker",
        "mqtt://127.0.0.1:1",
        "--device-id",
        "lonely",
        "--data",
        str(tmp_path),
    )
    board.send(_reading(0, "lonely"))
    wait_until(lambda: "cannot reach the broker" in bridge.output(), 15, "the error line")
    assert bridge.popen.poll() is None, "still running, still retrying"
    assert "Traceback" not in bridge.output()


def test_bridge_rejects_a_bad_broker_url_before_starting() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "iotpipe",
            "bridge",
            "--serial",
            "/dev/null",
            "--broker",
            "http://example:1883",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "must start with mqtt:// or mqtts://" in result.stderr
