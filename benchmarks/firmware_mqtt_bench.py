"""A board on Wi-Fi under the MicroPython unix port against a local Mosquitto: the awake
time per reading in battery mode (wake → read → connect → publish → drain requests →
disconnect), and the heap of the firmware's MQTT client.

    .venv/bin/python benchmarks/firmware_mqtt_bench.py [--wakes N]

The awake time is the firmware's own figure (from main.py's start to just before deep
sleep) and, beside it, the whole process from exec to exit as the host sees it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from iotpipe.board.virtual import find_micropython, firmware_dir, firmware_files

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def time_wakes(binary: str, root: Path, wakes: int) -> tuple[list[float], list[float]]:
    """(the firmware's own awake ms, process exec-to-exit ms) of each wake."""
    own, whole = [], []
    for i in range(wakes):
        env = {**os.environ, "IOTPIPE_WAKE": "deepsleep" if i else ""}
        start = time.perf_counter()
        out = subprocess.run(
            [binary, "-c", "import main"], cwd=root, env=env, capture_output=True, text=True
        )
        whole.append((time.perf_counter() - start) * 1000)
        own.append(float(out.stdout.split("awake ")[1].split()[0]))
    return own, whole


def time_mosquitto_pub(port: int, runs: int) -> list[float]:
    """The same job done by the C reference client: connect, one QoS 1 reading, leave."""
    reading = json.dumps(
        {"device": "ref", "boot": "0a1b2c3d", "seq": 0, "ts": time.time(), "uptime_ms": 0,
         "metrics": {"temperature": 21.5, "humidity": 48.0}}
    )  # fmt: skip
    argv = ["mosquitto_pub", "-p", str(port), "-q", "1", "-t", "iotpipe/ref/telemetry"]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([*argv, "-m", reading], check=True, capture_output=True)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wakes", type=int, default=30)
    args = parser.parse_args()
    binary = find_micropython()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        port = free_port()
        conf = root / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        broker = subprocess.Popen(
            ["/usr/sbin/mosquitto", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.3)
            for path in firmware_files():
                shutil.copyfile(path, root / path.name)
            config = {
                "device_id": "bench",
                "transport": "mqtt",
                "mqtt_host": "127.0.0.1",
                "mqtt_port": port,
                "deep_sleep": True,
                "interval_ms": 1000,
                "sensors": [{"type": "sim"}],
                "wdt_ms": 0,
                "boot_delay_ms": 0,
            }
            (root / "config.json").write_text(json.dumps(config))
            own, whole = time_wakes(binary, root, args.wakes)
            reference = time_mosquitto_pub(port, args.wakes)
            print(f"wakes {args.wakes} (the first one, a cold boot, also subscribes)")
            print(
                f"awake per reading, firmware's own figure: median {statistics.median(own):.0f} ms"
            )
            print(f"whole process, exec to exit: median {statistics.median(whole):.0f} ms")
            print(
                f"reference, mosquitto_pub -q 1 of one reading, exec to exit: median "
                f"{statistics.median(reference):.0f} ms; firmware/mosquitto_pub = "
                f"{statistics.median(whole) / statistics.median(reference):.2f}"
            )
            heap = subprocess.run(
                [binary, str(ROOT / "tests" / "firmware" / "run_mqtt_heap.py"), str(port)],
                env={**os.environ, "MICROPYPATH": str(firmware_dir())},
                capture_output=True,
                text=True,
            )
            print(heap.stdout + heap.stderr, end="")
        finally:
            broker.terminate()
            broker.wait(5)


if __name__ == "__main__":
    main()
