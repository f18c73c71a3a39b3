"""Readings per second from a pty through the bridge to a subscriber, beside
``mosquitto_pub -l`` reading the same lines from the same kind of pty.

    .venv/bin/python benchmarks/bridge_bench.py [--lines N] [--qos 0 1] [--repeat 3]

Each run starts its own Mosquitto on a free loopback port. Beside the two, the same lines
go through ``paho_lines.py``: ``mosquitto_pub -l`` in Python on paho's public API with
nothing parsed, the ceiling of any bridge built on it. A writer thread pushes N
reading lines into the pty master as fast as the reader takes them; ``mosquitto_sub -C N``
(C, so the subscriber is never the bottleneck) counts them out. The time is from the first
line written to the last one received; the bridge's CPU time over the same span and its
peak RSS are read from /proc.
Not a test: the figures depend on the machine (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path

DEVICE = "bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def line(seq: int) -> bytes:
    return (
        b'{"type":"reading","device":"%s","boot":"0a1b2c3d","seq":%d,"uptime_ms":%d,'
        b'"metrics":{"temperature":21.%02d,"humidity":48.3,"pressure":1013.2}}\n'
        % (DEVICE.encode(), seq, seq * 10, seq % 100)
    )


class Pty:
    def __init__(self, link: Path) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.link = link
        link.symlink_to(os.ttyname(self.slave))

    def wait_for_reader(self, timeout: float) -> None:
        """Until the program on the other side has opened the port: the bridge writes its
        first requests (info, replay) then. A line written before would be lost, as
        pyserial empties the input buffer when it opens a port."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            raise SystemExit(f"bridge_bench: nothing opened {self.link} in {timeout:.0f} s")
        os.read(self.master, 65536)

    def write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.master, view[:65536]) :]


def subscriber(port: int, topic: str, count: int, qos: int) -> subprocess.Popen[bytes]:
    sub = subprocess.Popen(
        ["mosquitto_sub", "-p", str(port), "-t", topic, "-q", str(qos), "-C", str(count)],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.3)  # mosquitto_sub says nothing when subscribed; it needs a moment
    return sub


def timed(pty: Pty, sub: subprocess.Popen[bytes], data: bytes) -> float:
    start = time.perf_counter()
    writer = threading.Thread(target=pty.write_all, args=(data,), daemon=True)
    writer.start()
    sub.wait(300)
    return time.perf_counter() - start


def cpu_s(pid: int) -> float:
    """User plus system time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for text in Path(f"/proc/{pid}/status").read_text().splitlines():
        if text.startswith("VmHWM:"):
            return int(text.split()[1]) / 1024
    return float("nan")


def run_lines_tool(tmp: Path, port: int, n: int, qos: int, python: bool) -> tuple[float, float]:
    """``mosquitto_pub -l`` (or paho_lines.py, the same in Python on paho) on a pty:
    readings per second and CPU µs per reading."""
    tmp.mkdir()
    pty = Pty(tmp / f"pub-{qos}.tty")
    topic = f"bench/pub{qos}"
    argv = ["mosquitto_pub", "-p", str(port), "-t", topic, "-q", str(qos), "-l"]
    if python:
        argv = [sys.executable, str(Path(__file__).with_name("paho_lines.py"))]
        argv += [str(port), topic, str(qos)]
    pub = subprocess.Popen(argv, stdin=pty.slave)
    try:
        sub = subscriber(port, topic, n, qos)
        if python:
            time.sleep(0.5)  # the interpreter starts and connects
        cpu_before = cpu_s(pub.pid)
        elapsed = timed(pty, sub, b"".join(line(i) for i in range(n)))
        cpu = cpu_s(pub.pid) - cpu_before
    finally:
        pub.terminate()
        pub.wait(10)
    return n / elapsed, cpu / n * 1e6


def run_bridge(tmp: Path, port: int, n: int, qos: int) -> tuple[float, float, float]:
    tmp.mkdir()
    pty = Pty(tmp / f"bridge-{qos}.tty")
    log = (tmp / f"bridge-{qos}.log").open("wb")
    profile = os.environ.get("BRIDGE_PROFILE")  # a file name: run the bridge under cProfile
    # -P: the iotpipe of PYTHONPATH when one is given (another tree), not the current dir's
    python = [sys.executable, "-P"]
    python += ["-m", "cProfile", "-o", f"{profile}.{qos}"] if profile else []
    argv = [*python, "-m", "iotpipe", "bridge", "--serial", str(pty.link)]
    argv += ["--broker", f"mqtt://127.0.0.1:{port}", "--qos", str(qos), "--device-id", DEVICE]
    argv += ["--spool", str(tmp / f"spool-{qos}"), "--ha-discovery", "off"]
    argv += ["--log-level", "warning"]
    bridge = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        topic = f"iotpipe/{DEVICE}/telemetry"
        warm = subscriber(port, topic, 1, qos)
        pty.wait_for_reader(60)
        first = 0
        while warm.poll() is None:  # until one gets through: the bridge is connected
            pty.write_all(line(first))
            first += 1
            if first > 60:
                raise SystemExit("bridge_bench: no reading came through the bridge in 60 s")
            with contextlib.suppress(subprocess.TimeoutExpired):
                warm.wait(1)
        sub = subscriber(port, topic, n, qos)
        cpu_before = cpu_s(bridge.pid)
        elapsed = timed(pty, sub, b"".join(line(first + i) for i in range(n)))
        cpu = cpu_s(bridge.pid) - cpu_before
        rss = peak_rss_mb(bridge.pid)
    finally:
        bridge.send_signal(signal.SIGTERM)
        bridge.wait(30)
    return n / elapsed, cpu / n * 1e6, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--qos", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the median counts")
    args = parser.parse_args()
    with local_broker("bridge-bench") as (tmp, port):
        print(f"{args.lines} readings of {len(line(1))} bytes, {os.cpu_count()} CPUs")
        for qos in args.qos:
            before = os.getloadavg()[0]
            compare(tmp, port, args.lines, qos, args.repeat)
            print(f"       load average {before:.1f} -> {os.getloadavg()[0]:.1f}")


@contextlib.contextmanager
def local_broker(prefix: str) -> Iterator[tuple[Path, int]]:
    """A scratch directory and an anonymous Mosquitto on a free loopback port in it."""
    mosquitto = shutil.which("mosquitto", path=os.environ["PATH"] + ":/usr/sbin")
    if mosquitto is None:
        raise SystemExit(f"{prefix}: mosquitto is not installed")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as name:
        tmp = Path(name)
        conf = tmp / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n")
        broker = subprocess.Popen([mosquitto, "-c", str(conf)], stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            yield tmp, port
        finally:
            broker.terminate()
            broker.wait(10)


def compare(tmp: Path, port: int, lines: int, qos: int, repeat: int) -> None:
    c_rates, p_rates, p_cpus, b_rates, cpus, rss = [], [], [], [], [], 0.0
    for run in range(repeat):
        c_rates.append(run_lines_tool(tmp / f"pub-q{qos}-{run}", port, lines, qos, False)[0])
        rate, cpu = run_lines_tool(tmp / f"paho-q{qos}-{run}", port, lines, qos, True)
        p_rates.append(rate)
        p_cpus.append(cpu)
        rate, cpu, peak = run_bridge(tmp / f"bridge-q{qos}-{run}", port, lines, qos)
        b_rates.append(rate)
        cpus.append(cpu)
        rss = max(rss, peak)
    c_rate, b_rate = statistics.median(c_rates), statistics.median(b_rates)
    p_rate = statistics.median(p_rates)
    ratios = ", ".join(f"{b / c:.2f}" for b, c in zip(b_rates, c_rates, strict=True))
    p_ratios = ", ".join(f"{p / c:.2f}" for p, c in zip(p_rates, c_rates, strict=True))
    spool = "spool on" if qos else "no spool"
    print(
        f"QoS {qos}: mosquitto_pub -l {c_rate:>9,.0f}/s | bridge ({spool}) {b_rate:>9,.0f}/s"
        f" | ratio {b_rate / c_rate:.2f} (runs {ratios})"
        f" | bridge CPU {statistics.median(cpus):.1f} µs/reading | peak RSS {rss:.0f} MB"
    )
    print(
        f"       paho_lines.py (paho alone, no parsing) {p_rate:>9,.0f}/s"
        f" | ratio {p_rate / c_rate:.2f} (runs {p_ratios})"
        f" | CPU {statistics.median(p_cpus):.1f} µs/reading"
    )


if __name__ == "__main__":
    main()
