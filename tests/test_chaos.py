"""Fault injection against real processes: the bridge loses nothing it accepted.

Run alone with ``pytest -m chaos``. Each test runs the real Mosquitto, the firmware under
MicroPython on a pty (or a pty the test writes to), and the bridge, then breaks one of
them: the broker stopped (SIGTERM, SIGKILL) and started again, the bridge killed while
the broker is down, the port closed and reopened, a burst of concurrent commands, a stream
of random bytes. A subscriber with a persistent session drops duplicates by
(device, boot, seq) as the protocol says, and must see every reading in between.
"""

from __future__ import annotations

import json
import random
import re
import signal
import threading
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.conftest import (
    Broker,
    Procs,
    free_port,
    start_bridge,
    start_broker,
    start_virtual_board,
    wait_until,
)
from tests.test_bridge import Requester, online
from tests.test_pipeline import FakeWire, _reading

pytestmark = pytest.mark.chaos


class Readings:
    """A subscriber with a persistent session: the broker keeps its readings while it is
    away, and it reconnects on its own. Readings are kept by (device, boot, seq)."""

    def __init__(self, port: int, device: str) -> None:
        self.seen: dict[str, set[int]] = {}
        self.duplicates = 0
        self.order: list[int] = []  # seqs as they arrived
        self._lock = threading.Lock()
        ready = threading.Event()
        topic = f"iotpipe/{device}/telemetry"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"chaos-{device}", protocol=mqtt.MQTTv5
        )
        client.on_message = self._on_message
        client.on_subscribe = lambda *a: ready.set()
        client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        client.reconnect_delay_set(0.1, 0.5)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect("127.0.0.1", port, clean_start=False, properties=props)
        client.loop_start()
        assert ready.wait(10)
        self.client = client

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        reading = json.loads(msg.payload)
        with self._lock:
            seqs = self.seen.setdefault(reading["boot"], set())
            self.duplicates += reading["seq"] in seqs
            seqs.add(reading["seq"])
            self.order.append(reading["seq"])

    def count(self) -> int:
        with self._lock:
            return sum(len(s) for s in self.seen.values())

    def highest(self) -> int:
        with self._lock:
            return max((max(s) for s in self.seen.values() if s), default=-1)

    def assert_contiguous(self) -> None:
        with self._lock:
            for boot, seqs in self.seen.items():
                missing = sorted(set(range(min(seqs), max(seqs) + 1)) - seqs)
                assert not missing, f"boot {boot}: readings {missing} never arrived"

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _pipeline(procs: Procs, tmp_path: Path, device: str) -> tuple[Broker, Readings]:
    broker = start_broker(procs, tmp_path / "broker", free_port(), insecure=True)
    readings = Readings(broker.port, device)
    start_virtual_board(procs, tmp_path / "tty", device, 50.0)
    return broker, readings


def _advance(readings: Readings, by: int, what: str, timeout: float = 30) -> None:
    target = readings.highest() + by
    wait_until(lambda: readings.highest() >= target, timeout, what)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_broker_restart_mid_stream_loses_no_reading(
    procs: Procs, tmp_path: Path, sig: signal.Signals
) -> None:
    device = f"brk-{sig.name.lower()}"
    broker, readings = _pipeline(procs, tmp_path, device)
    bridge = start_bridge(procs, tmp_path, tmp_path / "tty", broker.url)
    _advance(readings, 20, "readings before the restart")
    if sig == signal.SIGKILL:
        # Mosquitto saves sessions every autosave_interval; make "one happened since the
        # subscriber came" true now, as it would be for a long-running subscriber.
        broker.proc.popen.send_signal(signal.SIGUSR1)
        wait_until(lambda: (broker.data / "mosquitto.db").exists(), 10, "a broker save")
    broker.proc.stop(sig)
    wait_until(lambda: "broker_lost" in bridge.output(), 10, "the bridge to notice")
    start_broker(procs, broker.data, broker.port, insecure=True)
    _advance(readings, 100, "readings after the restart")
    readings.assert_contiguous()
    assert "Traceback" not in bridge.output()
    readings.close()


def test_a_bridge_killed_while_the_broker_is_down_delivers_its_spool_after_restart(
    procs: Procs, tmp_path: Path
) -> None:
    broker, readings = _pipeline(procs, tmp_path, "spooled")
    bridge = start_bridge(procs, tmp_path, tmp_path / "tty", broker.url)
    _advance(readings, 20, "readings before the outage")
    broker.proc.stop(signal.SIGTERM)
    wait_until(lambda: "broker_lost" in bridge.output(), 30, "the bridge to notice")
    before = readings.highest()
    wait_until(lambda: "device_online" in bridge.output(), 30, "board lines")
    # Killed at any moment, also between reading a line and committing it: the new
    # bridge asks the board to replay after the last committed reading (its mark).
    bridge.stop(signal.SIGKILL)
    spool = ("--spool", str(tmp_path / "bridge-spool"))  # the one the killed bridge used
    again = start_bridge(procs, tmp_path, tmp_path / "tty", broker.url, *spool, name="again")
    wait_until(lambda: "publishing device=spooled" in again.output(), 60, "the new bridge")
    start_broker(procs, broker.data, broker.port, insecure=True)
    _advance(readings, 50, "the spool and new readings", timeout=90)
    assert readings.highest() > before
    readings.assert_contiguous()
    assert "readings_missing" not in again.output(), "the board's ring held what was not committed"
    readings.close()


def test_a_port_that_closes_and_returns_is_read_again(
    procs: Procs, tmp_path: Path, subscribe
) -> None:
    broker, readings = _pipeline(procs, tmp_path, "replug")
    status = Requester(broker.port, "iotpipe/replug/status")  # just records messages
    bridge = start_bridge(procs, tmp_path, tmp_path / "tty", broker.url)
    _advance(readings, 10, "readings from the first boot")
    board = next(p for p in procs.started if p.name == "board-replug")
    board.stop()  # the pty and its link disappear, as when a USB cable is pulled
    wait_until(lambda: "port_lost" in bridge.output(), 10, "the bridge to notice")
    wait_until(lambda: status.answers[-1].payload == b"offline", 10, "offline status")
    first = readings.count()
    start_virtual_board(procs, tmp_path / "tty", "replug", 50.0)
    wait_until(lambda: readings.count() > first + 10, 30, "readings after the replug")
    assert len(readings.seen) >= 2, readings.seen.keys()  # a new boot: the board restarted
    assert status.answers[-1].payload == b"online"
    readings.assert_contiguous()
    status.close()
    readings.close()


def test_a_hundred_concurrent_commands_from_several_clients_each_get_their_own_answer(
    procs: Procs, broker: Broker, subscribe, tmp_path: Path
) -> None:
    start_virtual_board(procs, tmp_path / "tty", "busy", 10.0)
    start_bridge(procs, tmp_path, tmp_path / "tty", broker.url)
    online(subscribe, "busy")
    clients = [Requester(broker.port, f"answers/{n}") for n in range(5)]
    try:
        for i in range(20):  # every client uses the same ids: 0..19
            for n, client in enumerate(clients):
                cmd = "read" if i % 2 else "ping"
                body = json.dumps({"id": i, "cmd": cmd}).encode()
                client.ask("iotpipe/busy/cmd", body, b"%d-%d" % (n, i))
        for client in clients:
            wait_until(lambda c=client: len(c.by_correlation()) == 20, 30, "twenty answers")
        for n, client in enumerate(clients):
            for corr, answer in client.by_correlation().items():
                assert corr.startswith(b"%d-" % n) and answer["ok"], answer
                assert answer["id"] == int(corr.split(b"-")[1])
                assert ("metrics" in answer["result"]) == (answer["id"] % 2 == 1)  # type: ignore[operator]
    finally:
        for client in clients:
            client.close()


def test_random_bytes_between_valid_lines_never_stop_a_valid_one(
    procs: Procs, broker: Broker, tmp_path: Path
) -> None:
    readings = Readings(broker.port, "fuzzed")
    board = FakeWire(tmp_path / "tty")
    bridge = start_bridge(procs, tmp_path, tmp_path / "tty", broker.url, "--device-id", "fuzzed")
    wait_until(lambda: "port_open" in bridge.output(), 10, "the port open")
    rng = random.Random(4)
    for seq in range(300):
        junk = rng.randbytes(rng.choice([0, 1, 10, 100, 1500]))
        board.send(junk + b"\n" + _reading(seq, "fuzzed"))
    wait_until(lambda: readings.count() == 300, 30, "every valid reading")
    readings.assert_contiguous()
    assert bridge.popen.poll() is None and "Traceback" not in bridge.output()
    readings.close()


def _spool_rows(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found = re.search(r"^iotpipe_bridge_spool_rows (\S+)$", text, flags=re.M)  # not # HELP
    assert found, text
    return int(float(found[1]))


def test_a_long_outage_is_drained_in_order_at_the_configured_rate(
    procs: Procs, tmp_path: Path
) -> None:
    broker = start_broker(procs, tmp_path / "broker", free_port(), insecure=True)
    readings = Readings(broker.port, "backlog")
    board = FakeWire(tmp_path / "tty")
    metrics = free_port()
    extra = ("--device-id", "backlog", "--drain-rate", "1000", "--metrics", f"127.0.0.1:{metrics}")
    bridge = start_bridge(procs, tmp_path, tmp_path / "tty", broker.url, *extra)
    wait_until(lambda: "broker_connected" in bridge.output(), 10, "the bridge connected")
    broker.proc.stop(signal.SIGTERM)
    wait_until(lambda: "broker_lost" in bridge.output(), 10, "the bridge to notice")
    board.send(b"".join(_reading(seq, "backlog") for seq in range(3000)))
    wait_until(lambda: _spool_rows(metrics) == 3000, 10, "3000 readings spooled")
    start_broker(procs, broker.data, broker.port, insecure=True)
    samples: list[tuple[float, float, int]] = []  # before and after each scrape, rows

    def drained() -> bool:
        before = time.monotonic()
        rows = _spool_rows(metrics)
        samples.append((before, time.monotonic(), rows))
        return rows == 0

    wait_until(drained, 30, "the spool drained")
    wait_until(lambda: readings.count() == 3000, 10, "every reading delivered")
    readings.assert_contiguous()
    assert readings.order == list(range(3000)), "in order, each once"
    moving = [sample for sample in samples if 0 < sample[2] < 3000]
    # The widest window each pair of scrapes may span: a slow scrape on a busy machine
    # makes the rate look lower, never higher than it was.
    fastest = max(
        (r1 - r2) / (b2 - a1)
        for (a1, b1, r1) in moving
        for (a2, b2, r2) in moving
        if a2 - b1 >= 0.5
    )
    assert fastest < 1500, f"drained at {fastest:.0f}/s, paced at 1000/s"
    readings.close()
