"""Would a second process make the bridge faster on 2 cores? The bridge (one process)
beside a split prototype of it, and ``mosquitto_pub -l``, at QoS 0, in the same rounds.

    .venv/bin/python benchmarks/bridge_split.py [--lines N] [--repeat 3]

The prototype's first process reads the pty and does the bridge's per-reading work — the
fast path, continuity — and writes the telemetry payloads into a pipe, one a line; the
second, ``paho_lines.py``, publishes each line on paho's public API. It has none of the
bridge's other duties (requests, status, spool), so it is the most a split could gain.
Not a test: the figures depend on the machine (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import bridge_bench as bench

from iotpipe import wire
from iotpipe.bridge.continuity import NEW, Continuity
from iotpipe.bridge.fastpath import FastReadings
from iotpipe.bridge.lines import LineSplitter
from iotpipe.counters import Counters


def parse_stage() -> None:
    """Stage one: lines from stdin, telemetry payloads to stdout."""
    fast, split = FastReadings(), LineSplitter()
    continuity = Continuity(Counters("split"), lambda data: None)
    continuity.ask(bench.DEVICE, 0.0)  # a replay nobody answers, as in bridge_bench
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    while chunk := os.read(stdin, 65536):
        now, run, payloads = time.time(), [], []
        for raw in split.feed(chunk):
            got = fast.telemetry(raw, now)
            if got is None:  # the first line: the full parser, then its shape is known
                reading = wire.parse_line(raw)
                assert isinstance(reading, wire.Reading)
                fast.learn(reading)
                got = fast.telemetry(raw, now)
                assert got is not None
            run.append((got[0], zlib.crc32(raw)))
            payloads.append(got[1])
        verdicts = continuity.admit_many(bench.DEVICE, "0a1b2c3d", run, time.monotonic())
        new = [p for v, p in zip(verdicts, payloads, strict=True) if v == NEW]
        view = memoryview(b"\n".join(new) + b"\n")
        while view:
            view = view[os.write(stdout, view) :]


def run_split(tmp: Path, port: int, n: int) -> tuple[float, float, float]:
    """Readings per second, and CPU µs per reading of each stage."""
    pty = bench.Pty(tmp)
    topic = "bench/split"
    parse = [sys.executable, __file__, "--stage", "parse"]
    first = subprocess.Popen(parse, stdin=pty.slave, stdout=subprocess.PIPE)
    publish = [sys.executable, str(Path(__file__).with_name("paho_lines.py")), str(port)]
    second = subprocess.Popen([*publish, topic, "0"], stdin=first.stdout)
    try:
        sub = bench.subscriber(port, topic, n, 0)
        time.sleep(0.5)  # both interpreters start, the second connects
        cpu = bench.cpu_s(first.pid), bench.cpu_s(second.pid)
        elapsed = bench.timed(pty, sub, b"".join(bench.line(i) for i in range(n)))
        spent = bench.cpu_s(first.pid) - cpu[0], bench.cpu_s(second.pid) - cpu[1]
    finally:
        for stage in (first, second):
            stage.terminate()
            stage.wait(10)
    return n / elapsed, spent[0] / n * 1e6, spent[1] / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stage", choices=["parse"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage == "parse":
        parse_stage()
        return
    with bench.local_broker("bridge-split") as (tmp, port):
        for run in range(args.repeat):
            c_rate = bench.run_lines_tool(tmp / f"pub-{run}", port, args.lines, 0, False)[0]
            b_rate, b_cpu, _ = bench.run_bridge(tmp / f"bridge-{run}", port, args.lines, 0)
            s_rate, parse_cpu, pub_cpu = run_split(tmp / f"split-{run}.tty", port, args.lines)
            print(
                f"load {os.getloadavg()[0]:.1f} | mosquitto_pub -l {c_rate:>7,.0f}/s"
                f" | bridge {b_rate / c_rate:.2f} ({b_cpu:.1f} µs CPU/reading)"
                f" | split {s_rate / c_rate:.2f} ({parse_cpu:.1f} + {pub_cpu:.1f} µs)"
            )


if __name__ == "__main__":
    main()
