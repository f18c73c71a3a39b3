"""Shared parts for the no-loss tests (no tests here): what the board produced, a small
disk that fills up, and a subscriber that keeps every reading's values.

What the board produced: the virtual board runs the firmware's simulated sensor, a seeded
random walk (``firmware/sensor_sim.py``: "the same seed gives the same series, so tests
can predict it"). ``board_series`` runs that same firmware code under the same MicroPython
binary with the same seed and returns the lines it writes, so a test compares what a user
got back with what the board wrote, value by value, for every seq.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from iotpipe.board.virtual import find_micropython, firmware_dir
from tests.conftest import wait_until

_SERIES = """
import sys
sys.path.insert(0, {fw!r})
import node
config = {{"device_id": {device!r}, "board": "unix", "interval_ms": 10,
          "sensors": [{{"type": "sim", "seed": {seed}}}]}}
n = node.Node(config, sys.stdout.write, "00000000")
for _ in range({count}):
    n.sample()
"""


def board_series(device: str, count: int) -> list[dict[str, float]]:
    """The metrics of readings 0 … count-1 of a virtual board named ``device``, as its
    firmware writes them (the seed is the one `iotpipe board virtual` gives it)."""
    seed = zlib.crc32(device.encode()) or 1
    code = _SERIES.format(fw=str(firmware_dir()), device=device, seed=seed, count=count)
    result = subprocess.run(
        [find_micropython(), "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["seq"] for line in lines] == list(range(count))
    return [{k: float(v) for k, v in line["metrics"].items()} for line in lines]


@contextlib.contextmanager
def small_disk(path: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path``, unmounted at the end even if the test failed."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (run the chaos tests as root)")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        # Lazy: a process of the test may still have a file open there for a moment.
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk``; the file returned gives them back when removed."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 4096, 1):  # big pieces, then the last few bytes
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


class Telemetry:
    """A subscriber with a persistent session that keeps each reading's metrics by
    (boot, seq), and every ``readings_missing`` event, for one device."""

    def __init__(self, port: int, device: str, client_id: str | None = None) -> None:
        self.values: dict[tuple[str, int], dict[str, float]] = {}
        self.conflicts: list[tuple[str, int]] = []
        self.gaps: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        base = f"iotpipe/{device}"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"noloss-{device}",
            protocol=mqtt.MQTTv5,
        )
        client.on_message = self._on_message
        client.on_subscribe = lambda *a: ready.set()
        client.on_connect = lambda c, *a: c.subscribe(
            [(f"{base}/telemetry", 1), (f"{base}/event", 1)]
        )
        client.reconnect_delay_set(0.1, 0.5)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect("127.0.0.1", port, clean_start=False, properties=props)
        client.loop_start()
        assert ready.wait(10)
        self.client = client

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        with self._lock:
            if msg.topic.endswith("/event"):
                if body.get("event") == "readings_missing":
                    self.gaps.append(body["data"])
                return
            key = (body["boot"], body["seq"])
            known = self.values.setdefault(key, body["metrics"])
            if known != body["metrics"]:
                self.conflicts.append(key)

    def highest(self) -> int:
        with self._lock:
            return max((seq for _, seq in self.values), default=-1)

    def seqs(self) -> set[int]:
        with self._lock:
            return {seq for _, seq in self.values}

    def boots(self) -> set[str]:
        with self._lock:
            return {boot for boot, _ in self.values}

    def missing_reported(self) -> set[int]:
        with self._lock:
            return {s for g in self.gaps for s in range(g["first"], g["last"] + 1)}

    def _unaccounted(self) -> set[int]:
        with self._lock:
            top = max((seq for _, seq in self.values), default=-1)
            got = {seq for _, seq in self.values}
            reported = {s for g in self.gaps for s in range(g["first"], g["last"] + 1)}
        return set(range(top + 1)) - got - reported

    def check_against_board(self, device: str, settle_s: float = 60) -> int:
        """Every reading from seq 0 to the highest received has the board's values, or
        was reported missing — exactly (no reading both, none neither). Returns how many
        were reported missing. A replay in progress gets ``settle_s`` to fill its hole."""
        with contextlib.suppress(AssertionError):
            wait_until(lambda: not self._unaccounted(), settle_s, "the holes filled")
        with self._lock:
            (boot,) = {b for b, _ in self.values}  # one boot: the board never restarted
            top = max(seq for _, seq in self.values)
            got = {seq: metrics for (_, seq), metrics in self.values.items()}
            reported = [s for g in self.gaps for s in range(g["first"], g["last"] + 1)]
            conflicts = list(self.conflicts)
        assert not conflicts, f"readings received with two different values: {conflicts[:10]}"
        assert len(reported) == len(set(reported)), "a reading was reported missing twice"
        both = set(reported) & set(got)
        assert not both, f"readings both received and reported missing: {sorted(both)[:10]}"
        neither = set(range(top + 1)) - set(got) - set(reported)
        assert not neither, f"silently lost (boot {boot}): {sorted(neither)[:20]}…"
        expected = board_series(device, top + 1)
        wrong = [seq for seq, metrics in got.items() if metrics != expected[seq]]
        assert not wrong, f"values differ from the board's at {wrong[:10]}"
        return len(reported)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
