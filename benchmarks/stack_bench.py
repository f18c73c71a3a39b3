"""The whole stack's memory for N boards: broker + one bridge + dashboard, from /proc.

    .venv/bin/python benchmarks/stack_bench.py [--boards 10] [--rate 5] [--settle 20]

Starts `iotpipe up --virtual N` on free loopback ports in a temporary data directory,
waits until the dashboard's /api/devices lists a reading of every board (so every port
of the one bridge is read and every board's readings are stored), lets it run ``--settle``
seconds more, then reads each process's peak RSS (VmHWM) and current RSS (VmRSS) from
/proc and prints them per process and in total. The virtual boards (`iotpipe board
virtual` and the MicroPython process each runs) are the boards, not the stack: listed,
not counted; nor is `iotpipe up` itself, which only supervises. The target of issue 13:
broker + bridge + dashboard for 10 boards ≤ 120 MB in all.
Not a test: the figures depend on the machine (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

TARGET_MB = 120.0
STACK = ("broker", "bridge", "dashboard")
WHY_NOT = {
    "board": "a virtual board's emulator",
    "board (micropython)": "a virtual board",
    "announce": "Home Assistant discovery for Wi-Fi boards, optional",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")


def role(argv: list[str]) -> str:
    """What an `up` child is, from its command line (`iotpipe broker` execs mosquitto)."""
    joined = " ".join(argv)
    if "mosquitto" in argv[0]:
        return "broker"
    for name in ("board virtual", "bridge", "dashboard", "announce", "broker"):
        if f"iotpipe {name}" in joined:
            return "board" if name == "board virtual" else name
    return argv[0]


def devices_with_readings(http: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/api/devices", timeout=5) as r:
            listed = json.loads(r.read())
    except (OSError, ValueError):
        return 0
    return sum(1 for device in listed if device.get("last"))


def wait_for(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"stack_bench: {what} did not happen in {timeout:.0f} s")
        time.sleep(0.5)


def measure(up: subprocess.Popen[bytes]) -> list[tuple[str, int, int, int]]:
    rows = []
    for pid in children(up.pid):
        kind = role(cmdline(pid))
        rows.append((kind, pid, status_kb(pid, "VmHWM"), status_kb(pid, "VmRSS")))
        if kind == "board":  # the MicroPython process under it is the board too
            rows += [
                ("board (micropython)", p, status_kb(p, "VmHWM"), status_kb(p, "VmRSS"))
                for p in children(pid)
            ]
    return rows


def report(rows: list[tuple[str, int, int, int]], up_pid: int, boards: int) -> float:
    print(f"{'process':<22}{'pid':>8}{'peak RSS MB':>14}{'RSS MB':>10}")
    total_peak = total_now = 0
    for kind, pid, peak, now in sorted(rows, key=lambda r: (r[0] not in STACK, r[0], r[1])):
        counted = kind in STACK
        if counted:
            total_peak, total_now = total_peak + peak, total_now + now
        mark = "" if counted else f"   (not counted: {WHY_NOT.get(kind, 'not the stack')})"
        print(f"{kind:<22}{pid:>8}{peak / 1024:>14.1f}{now / 1024:>10.1f}{mark}")
    print(
        f"{'iotpipe up':<22}{up_pid:>8}{status_kb(up_pid, 'VmHWM') / 1024:>14.1f}"
        f"{status_kb(up_pid, 'VmRSS') / 1024:>10.1f}   (supervisor, not counted)"
    )
    peak_mb = total_peak / 1024
    print(
        f"{'broker+bridge+dashboard':<22}{'':>8}{peak_mb:>14.1f}{total_now / 1024:>10.1f}"
        f"   for {boards} boards; target ≤ {TARGET_MB:.0f} MB (peak)"
    )
    return peak_mb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=10)
    parser.add_argument("--rate", type=float, default=5.0, help="readings per second per board")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds to run once all flow")
    args = parser.parse_args()
    mqtt, http = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="iotpipe-stack-") as tmp:
        argv = [sys.executable, "-P", "-m", "iotpipe", "up", "--virtual", str(args.boards)]
        argv += ["--rate", str(args.rate), "--mqtt-port", str(mqtt)]
        argv += ["--http", f"127.0.0.1:{http}", "--data", str(Path(tmp) / "data")]
        log = (Path(tmp) / "up.log").open("wb")
        up = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: devices_with_readings(http) >= args.boards, 180, "every board")
            bridges = [p for p in children(up.pid) if role(cmdline(p)) == "bridge"]
            print(f"{args.boards} boards flowing through {len(bridges)} bridge process(es)")
            time.sleep(args.settle)
            peak = report(measure(up), up.pid, args.boards)
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(60)
            log.close()
    return 0 if peak <= TARGET_MB else 1


if __name__ == "__main__":
    sys.exit(main())
