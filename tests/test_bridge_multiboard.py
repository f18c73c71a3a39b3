"""One bridge process for every board: real Mosquitto, several boards (the firmware under
MicroPython on ptys), ONE bridge serving them all. Each board's readings arrive on its
own topics with the values its firmware wrote; one board's port lost and back leaves the
others flowing; each device has its own status and will; `auto` picks up a board plugged
in later; a spool written by the one-bridge-per-board release is delivered, value by value.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from iotpipe import serialports
from iotpipe.bridge.daemon import Bridge, BridgeConfig
from iotpipe.bridge.names import port_name
from iotpipe.bridge.publisher import MqttOptions
from iotpipe.endpoints import parse_broker_url
from tests.conftest import (
    Broker,
    Proc,
    Procs,
    Subscriber,
    free_port,
    start_broker,
    start_virtual_board,
    wait_until,
)
from tests.noloss_support import Telemetry, board_series
from tests.test_pipeline import FakeWire, _reading

ROOT = Path(__file__).resolve().parent.parent
# The last commit with one bridge process per board: its spools are what users have.
ONE_BRIDGE_PER_BOARD = "ad486ef"
RATE = 25.0


def start_multibridge(procs: Procs, data: Path, ports: list[Path], broker: str) -> Proc:
    serial = [arg for port in ports for arg in ("--serial", str(port))]
    return procs.iotpipe("bridge", "bridge", *serial, "--broker", broker, "--data", str(data))


def last_status(sub: Subscriber, device: str) -> bytes | None:
    got = sub.on(f"/{device}/status")
    return bytes(got[-1].payload) if got else None


def advance(readings: Telemetry, by: int, what: str, timeout: float = 60) -> None:
    target = readings.highest() + by
    wait_until(lambda: readings.highest() >= target, timeout, what)


def check_every_boot(readings: Telemetry, device: str) -> None:
    """For each boot, every seq from 0 to its highest arrived with the firmware's values
    (the virtual board's seed is its name's, so each boot writes the same series)."""
    by_boot: dict[str, dict[int, dict[str, float]]] = {}
    for (boot, seq), metrics in dict(readings.values).items():
        by_boot.setdefault(boot, {})[seq] = metrics
    expected = board_series(device, max(max(s) for s in by_boot.values()) + 1)
    for boot, got in by_boot.items():
        missing = set(range(max(got) + 1)) - set(got) - readings.missing_reported()
        assert not missing, f"{device} boot {boot}: {sorted(missing)[:10]} never arrived"
        wrong = [seq for seq, metrics in got.items() if metrics != expected[seq]]
        assert not wrong, f"{device} boot {boot}: values differ at {wrong[:10]}"


def test_one_bridge_serves_three_boards_each_on_its_own_topics_spool_and_will(
    procs: Procs, broker: Broker, tmp_path: Path
) -> None:
    devices = ["multi-a", "multi-b", "multi-c"]
    links = [tmp_path / f"{d}.tty" for d in devices]
    readings = {d: Telemetry(broker.port, d) for d in devices}
    status = Subscriber(broker.port, "iotpipe/+/status")
    bridges = Subscriber(broker.port, "iotpipe/bridge/+/status")
    boards = {
        d: start_virtual_board(procs, link, d, RATE) for d, link in zip(devices, links, strict=True)
    }
    bridge = start_multibridge(procs, tmp_path, links, broker.url)
    for d in devices:
        advance(readings[d], 40, f"readings of {d}")
        wait_until(lambda d=d: last_status(status, d) == b"online", 30, f"{d} online")
    for link in links:  # each port its own spool, where one bridge per port kept it
        assert (tmp_path / "spool" / port_name(str(link)) / "spool.sqlite").is_file()

    # Board b's port goes away (the cable pulled): b goes offline, a and c keep flowing.
    boards["multi-b"].stop()
    wait_until(lambda: last_status(status, "multi-b") == b"offline", 15, "b offline")
    assert "port_lost" in bridge.output()
    for d in ("multi-a", "multi-c"):
        advance(readings[d], 50, f"{d} while b is away")
        assert last_status(status, d) == b"online"
    # It returns (a new boot of the firmware) and the same process reads it again.
    start_virtual_board(procs, links[1], "multi-b", RATE)
    wait_until(lambda: len(readings["multi-b"].boots()) == 2, 60, "b's new boot")
    wait_until(lambda: last_status(status, "multi-b") == b"online", 30, "b online again")
    advance(readings["multi-b"], 20, "b after its return")
    advance(readings["multi-a"], 20, "a after b returned")

    for d in ("multi-a", "multi-c"):  # one boot each: every reading, value by value
        assert readings[d].check_against_board(d) == 0, f"{d} reported readings missing"
    check_every_boot(readings["multi-b"], "multi-b")
    assert "Traceback" not in bridge.output()

    # The bridge dies: each device's own will says it is offline, and the bridge's too.
    bridge.stop(signal.SIGKILL)
    for d in ("multi-a", "multi-c", "multi-b"):
        wait_until(lambda d=d: last_status(status, d) == b"offline", 90, f"{d}'s will")
    wait_until(lambda: bridges.messages[-1].payload == b"offline", 90, "the bridge's will")
    assert len({m.topic for m in bridges.messages}) == 1, "one bridge, one bridge status"
    for sub in (*readings.values(), status, bridges):
        sub.close()


@dataclass
class FakeUsbPort:
    """What pyserial's list_ports gives for a board's USB port (here: its pty link)."""

    device: str
    serial_number: str
    vid: int = 0x303A  # Espressif: a vendor `auto` serves
    pid: int = 0x1001
    description: str = "USB JTAG/serial debug unit"


def test_auto_serves_a_board_plugged_in_later_with_its_own_spool(
    procs: Procs, broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugged: list[FakeUsbPort] = []
    monkeypatch.setattr(serialports, "_comports", lambda: list(plugged))
    status = Subscriber(broker.port, "iotpipe/+/status")
    first, later = Telemetry(broker.port, "auto-first"), Telemetry(broker.port, "auto-later")
    start_virtual_board(procs, tmp_path / "first.tty", "auto-first", RATE)
    plugged.append(FakeUsbPort(str(tmp_path / "first.tty"), "SN-FIRST"))
    config = BridgeConfig(
        serial=("auto",),
        baud=115200,
        mqtt=MqttOptions(parse_broker_url(broker.url)),
        base_topic="iotpipe",
        name="test-auto",
        spool_root=tmp_path / "spool",
        ha_prefix=None,
    )
    bridge = Bridge(config)
    runner = threading.Thread(target=bridge.run, name="bridge")
    runner.start()
    try:
        advance(first, 20, "the board there at the start")
        start_virtual_board(procs, tmp_path / "later.tty", "auto-later", RATE)
        plugged.append(FakeUsbPort(str(tmp_path / "later.tty"), "SN-LATER"))
        advance(later, 30, "the board plugged in later")
        wait_until(lambda: last_status(status, "auto-later") == b"online", 30, "later online")
        advance(first, 20, "the first board still")
        assert sorted(bridge.links) == ["SN-FIRST", "SN-LATER"]
        for number in ("SN-FIRST", "SN-LATER"):  # the spool `--serial NUMBER` would use
            assert (tmp_path / "spool" / port_name(number) / "spool.sqlite").is_file()
        assert first.check_against_board("auto-first") == 0
        assert later.check_against_board("auto-later") == 0
    finally:
        bridge.stop()
        runner.join(30)
    assert not runner.is_alive()
    assert last_status(status, "auto-first") == b"offline"  # said on the way out
    for sub in (first, later, status):
        sub.close()


def _old_tree(tmp_path: Path) -> Path:
    """The iotpipe package as the one-bridge-per-board release had it."""
    old = tmp_path / "old"
    old.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ONE_BRIDGE_PER_BOARD, "iotpipe"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        pytest.skip(f"no git history with {ONE_BRIDGE_PER_BOARD} here: {archive.stderr!r}")
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    return old


def _spooled(path: Path) -> dict[tuple[str, int], dict[str, float]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT topic, payload FROM spool WHERE topic LIKE '%/telemetry'")
        bodies = [json.loads(payload) for _, payload in rows]
    return {(b["boot"], b["seq"]): b["metrics"] for b in bodies}


def _count(path: Path) -> int:
    """Readings in a spool being written (0 while it is still being made)."""
    try:
        return len(_spooled(path)) if path.exists() else 0
    except sqlite3.OperationalError:
        return 0


def test_a_spool_left_by_the_one_bridge_per_board_release_is_delivered_value_by_value(
    procs: Procs, tmp_path: Path
) -> None:
    old, port, link = _old_tree(tmp_path), free_port(), tmp_path / "legacy.tty"
    board = start_virtual_board(procs, link, "legacy", RATE)
    argv = [sys.executable, "-P", "-m", "iotpipe", "bridge", "--serial", str(link)]
    argv += ["--broker", f"mqtt://127.0.0.1:{port}", "--data", str(tmp_path / "data")]
    # The broker is not there yet: every reading the old bridge reads stays in its spool.
    previous = procs.start("old-bridge", argv, env={"PYTHONPATH": str(old)})
    spool = tmp_path / "data" / "spool" / port_name(str(link)) / "spool.sqlite"
    wait_until(lambda: _count(spool) >= 60, 60, "the old spool")
    assert previous.stop() == 0
    assert "iotpipe.bridge.serialside" in previous.output(), "not the old release's code"
    board.stop()  # from now on only the spool holds these readings
    left = _spooled(spool)

    broker = start_broker(procs, tmp_path / "broker", port, insecure=True)
    readings = Telemetry(broker.port, "legacy")
    bridge = start_multibridge(procs, tmp_path / "data", [link], broker.url)
    wait_until(lambda: set(left) <= set(readings.values), 60, "every spooled reading")
    assert {key: readings.values[key] for key in left} == left
    expected = board_series("legacy", max(seq for _, seq in left) + 1)
    assert all(metrics == expected[seq] for (_, seq), metrics in left.items())
    assert "Traceback" not in bridge.output()
    readings.close()


def test_garbage_on_one_port_never_disturbs_the_board_on_another(
    procs: Procs, broker: Broker, tmp_path: Path
) -> None:
    calm, noisy = Telemetry(broker.port, "calm"), Telemetry(broker.port, "noisy")
    start_virtual_board(procs, tmp_path / "calm.tty", "calm", RATE)
    wire = FakeWire(tmp_path / "noisy.tty")  # the test speaks for this board
    bridge = start_multibridge(
        procs, tmp_path, [tmp_path / "calm.tty", tmp_path / "noisy.tty"], broker.url
    )
    advance(calm, 20, "the calm board")
    before = calm.highest()
    rng = random.Random(13)
    for seq in range(300):
        junk = rng.randbytes(rng.choice([0, 1, 10, 100, 1500]))
        wire.send(junk + b"\n" + _reading(seq, "noisy"))
    wait_until(lambda: len(noisy.values) == 300, 60, "every valid line of the noisy port")
    assert {seq: m for (_, seq), m in noisy.values.items()} == {
        seq: {"t": seq + 0.5} for seq in range(300)
    }
    advance(calm, 30, "the calm board after the garbage")
    assert calm.highest() > before and calm.check_against_board("calm") == 0
    assert bridge.popen.poll() is None and "Traceback" not in bridge.output()
    for sub in (calm, noisy):
        sub.close()
