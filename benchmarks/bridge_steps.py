"""CPU per reading of each step of the bridge's hot path, in-process, no profiler.

    .venv/bin/python benchmarks/bridge_steps.py [--lines N]

The fast path on the benchmark's reading lines, continuity admitting them with a replay
running (the benchmark's case: nobody answers it), and paho's ``publish`` plus a corked
``loop_write`` to a Mosquitto of its own, at QoS 0 in MQTT 5 and 3.1.1, and at QoS 1
with paho's own in-flight limit (as the bridge had it) and without (as it has it now). Run it with
another tree on ``PYTHONPATH`` to measure that tree's code (``admit_many`` only where it
exists). Not a test: the figures depend on the machine (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import socket
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from bridge_bench import free_port, line
from paho.mqtt.enums import CallbackAPIVersion

from iotpipe import wire
from iotpipe.bridge.continuity import Continuity
from iotpipe.bridge.fastpath import FastReadings
from iotpipe.counters import Counters

BATCH = 27  # lines per port read in the benchmark at main's speed


def per_reading(n: int, work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return (time.perf_counter() - start) / n * 1e6


def fast_path(lines: list[bytes]) -> float:
    fast = FastReadings()
    first = wire.parse_line(lines[0])
    assert isinstance(first, wire.Reading)
    fast.learn(first)
    return per_reading(len(lines), lambda: [fast.telemetry(raw, 1764768000.123) for raw in lines])


def continuity(lines: list[bytes], batched: bool) -> float:
    policy = Continuity(Counters("steps"), lambda data: None)
    policy.ask("bench", 0.0)  # a replay nobody answers, as in the benchmark
    readings = [(seq, zlib.crc32(raw)) for seq, raw in enumerate(lines)]
    if batched:
        runs = [readings[i : i + BATCH] for i in range(0, len(readings), BATCH)]
        admit_many = policy.admit_many  # type: ignore[attr-defined]
        return per_reading(
            len(lines), lambda: [admit_many("bench", "0a1b2c3d", r, 1.0) for r in runs]
        )
    admit = policy.admit
    return per_reading(
        len(lines), lambda: [admit("bench", "0a1b2c3d", s, d, 1.0) for s, d in readings]
    )


def publish(port: int, payloads: list[bytes], protocol: int) -> float:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"steps-{protocol}", protocol=protocol
    )
    client.on_socket_register_write = lambda client, userdata, sock: None
    client.connect("127.0.0.1", port)
    while not client.is_connected():
        client.loop(1.0)
    sock = client.socket()
    assert isinstance(sock, socket.socket)

    def work() -> None:
        for i in range(0, len(payloads), BATCH):
            for payload in payloads[i : i + BATCH]:
                client.publish("iotpipe/bench/telemetry", payload, 0)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            client.loop_write()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
            client.loop_read()  # nothing comes at QoS 0; keeps the loop honest

    start = time.process_time()
    work()
    cpu = (time.process_time() - start) / len(payloads) * 1e6
    client.disconnect()
    return cpu


def publish_qos1(port: int, payloads: list[bytes], paho_limit: int, window: int) -> float:
    """QoS 1 with at most ``window`` unacknowledged, PUBACKs read in a select loop."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"steps-q1-{paho_limit}")
    client.on_socket_register_write = lambda client, userdata, sock: None
    client.max_inflight_messages_set(paho_limit)
    client.max_queued_messages_set(0)
    acked = [0]
    client.on_publish = lambda client, userdata, mid, reason, props: acked.append(mid)
    client.connect("127.0.0.1", port)
    while not client.is_connected():
        client.loop(1.0)
    sock = client.socket()
    assert isinstance(sock, socket.socket)
    sent, start = 0, time.process_time()
    while len(acked) <= len(payloads):
        while sent < len(payloads) and sent - len(acked) + 1 < window:
            client.publish("iotpipe/bench/telemetry", payloads[sent], 1)
            sent += 1
        readable, writable, _ = select.select([sock], [sock] if client.want_write() else [], [], 5)
        if writable:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            client.loop_write()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        if readable:
            client.loop_read()
    cpu = (time.process_time() - start) / len(payloads) * 1e6
    client.disconnect()
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000)
    args = parser.parse_args()
    lines = [line(seq).rstrip(b"\n") for seq in range(args.lines)]
    print(f"{args.lines} readings of {len(lines[0])} bytes, load {os.getloadavg()[0]:.1f}")
    print(f"fast path            {fast_path(lines):6.2f} µs/reading")
    print(f"continuity, admit    {continuity(lines, False):6.2f} µs/reading")
    if hasattr(Continuity, "admit_many"):
        print(f"continuity, batched  {continuity(lines, True):6.2f} µs/reading")
    fast = FastReadings()
    first = wire.parse_line(lines[0])
    assert isinstance(first, wire.Reading)
    fast.learn(first)
    payloads = [got[1] for raw in lines if (got := fast.telemetry(raw, 1764768000.123))]
    mosquitto = shutil.which("mosquitto", path=os.environ["PATH"] + ":/usr/sbin")
    if mosquitto is None:
        raise SystemExit("bridge_steps: mosquitto is not installed")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bridge-steps-") as name:
        conf = Path(name) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        broker = subprocess.Popen([mosquitto, "-c", str(conf)], stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            for name_, protocol in (("MQTT 5", mqtt.MQTTv5), ("MQTT 3.1.1", mqtt.MQTTv311)):
                cpu = publish(port, payloads, protocol)
                print(f"paho QoS 0, {name_:<10} {cpu:6.2f} µs/reading (CPU)")
            some = payloads[:30_000]
            for limit, window in ((100, 1000), (0, 100)):
                cpu = publish_qos1(port, some, limit, window)
                print(
                    f"paho QoS 1, paho's limit {limit:>3}, window {window:>4}: {cpu:6.2f} µs (CPU)"
                )
        finally:
            broker.terminate()
            broker.wait(10)


if __name__ == "__main__":
    main()
