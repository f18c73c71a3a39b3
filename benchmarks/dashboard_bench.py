"""The dashboard's figures: ingest rate, series query time, live latency and memory.

    .venv/bin/python benchmarks/dashboard_bench.py [--readings N] [--rows N] [--skip-series]

1. Ingest, live: N telemetry messages published at full speed; the time until the
   dashboard has stored them all, beside the time ``mosquitto_sub -q 1`` takes to receive
   the same stream (their ratio says whether the dashboard keeps up with the broker).
   Ingest, backlog: N readings queued in the dashboard's persistent session, and the same
   N in a persistent ``mosquitto_sub -q 1 -c`` session; each drained alone, timed from its
   first message, with CPU µs per reading and peak RSS of each process. The dashboard
   acknowledges each reading only after its transaction committed; mosquitto_sub as soon as
   it has read it. The ratio is the figure of docs/benchmarks.md (floor 0.35). Beside
   them ``paho_drain.py``, the same drain in Python on paho's public API storing nothing:
   the ceiling of any ingest on paho (``paho_alone_*``).
2. Series: a year of one metric at 1 Hz (``--rows``, default 31,536,000) written straight
   into a SQLite store with its rollups generated in SQL, then
   ``/api/devices/…/series?points=2000`` over the whole year, a day and an hour.
3. Latency: 100 readings/s for 10 s; publish → the SSE event arriving at a client.
Peak RSS of the dashboard process is read from /proc. Not a test: the figures depend on
the machine (see docs/benchmarks.md, section Dashboard).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

YEAR = 365 * 86400
T0 = 1_700_000_000 - 1_700_000_000 % 3600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


STARTED: list[subprocess.Popen[bytes]] = []
"""Every process this script starts, stopped by main() even when a phase fails."""


LOGINS: dict[str, tuple[str, str]] = {}
"""(user, password) per broker role, read from the credentials `iotpipe broker` made."""


def load_logins(broker_data: Path) -> None:
    for role in ("bridge", "dashboard", "reader"):
        body = json.loads((broker_data / "credentials" / f"{role}.json").read_text())
        LOGINS[role] = (str(body["user"]), str(body["password"]))


def iotpipe(tmp: Path, name: str, *args: str, role: str = "") -> subprocess.Popen[bytes]:
    log = (tmp / f"{name}.log").open("wb")
    env = dict(os.environ)
    if role:  # the password in the environment, never on a command line
        env["IOTPIPE_MQTT_USER"], env["IOTPIPE_MQTT_PASSWORD"] = LOGINS[role]
    argv = [sys.executable, "-P", "-m", "iotpipe", *args]  # -P: PYTHONPATH picks the tree
    proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
    STARTED.append(proc)
    return proc


def mosquitto_sub(tmp: Path, port: int, *args: str) -> subprocess.Popen[bytes]:
    """mosquitto_sub as the reader role; its login from its own options file
    ($XDG_CONFIG_HOME/mosquitto_sub), not from its command line."""
    config = tmp / "xdg"
    config.mkdir(exist_ok=True)
    user, password = LOGINS["reader"]
    (config / "mosquitto_sub").write_text(f"-u {user}\n-P {password}\n")
    os.chmod(config / "mosquitto_sub", 0o600)
    argv = ["mosquitto_sub", "-p", str(port), "-q", "1", "-t", "iotpipe/+/telemetry", *args]
    env = {**os.environ, "XDG_CONFIG_HOME": str(config)}
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, env=env)
    STARTED.append(proc)
    return proc


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a running process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"timed out after {timeout} s")


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return bytes(resp.read())


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):  # peak resident set size
            return int(line.split()[1]) / 1024
    return 0.0


def counter(base: str, name: str) -> int:
    for line in get(base + "/metrics").decode().splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))  # prometheus_client writes 20000.0
    return 0


def payload(seq: int, ts: float) -> bytes:
    return (
        b'{"device":"bench","boot":"0a1b2c3d","seq":%d,"ts":%.3f,"uptime_ms":%d,'
        b'"metrics":{"temperature":21.%02d,"humidity":48.3,"pressure":1013.2}}'
        % (seq, ts, seq * 10, seq % 100)
    )


def publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(*LOGINS["bridge"])
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


class Dashboard:
    def __init__(self, tmp: Path, broker_port: int, data: Path, *extra: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = iotpipe(
            tmp, f"dashboard-{self.port}", "dashboard",
            "--broker", f"mqtt://127.0.0.1:{broker_port}",
            "--http", f"127.0.0.1:{self.port}", "--data", str(data),
            "--history", "100000000", "--log-level", "warning", *extra, role="dashboard",
        )  # fmt: skip
        wait_for(lambda: json.loads(get(self.base + "/healthz"))["mqtt_connected"])

    def stop(self) -> float:
        peak = rss_mb(self.proc.pid)
        self.proc.terminate()
        self.proc.wait(30)
        return peak


def publish_all(port: int, n: int) -> None:
    """N readings at QoS 1 as fast as paho sends them; returns when the last is acked.
    (``mosquitto_pub -l`` would be faster, but Mosquitto 2.0.11 cuts it off with "out of
    memory" after some 34,000 messages at full speed.)"""
    client = publisher(port)
    now = time.time() - n / 1000
    pending: deque[mqtt.MQTTMessageInfo] = deque()
    for seq in range(n):
        pending.append(client.publish("iotpipe/bench/telemetry", payload(seq, now + seq / 1000), 1))
        if len(pending) > 30_000:  # message ids are 16 bits: never 65,536 outstanding
            pending.popleft().wait_for_publish(600)
    for info in pending:
        info.wait_for_publish(600)
    client.loop_stop()
    client.disconnect()


def bench_ingest(tmp: Path, broker_port: int, n: int) -> dict[str, float]:
    """Live: the dashboard and mosquitto_sub take the same stream from one publisher."""
    dash = Dashboard(tmp, broker_port, tmp / "ingest")
    sub = mosquitto_sub(tmp, broker_port, "-C", str(n))
    time.sleep(0.5)  # mosquitto_sub has subscribed
    started = time.perf_counter()
    publish_all(broker_port, n)
    sub.wait(600)
    sub_s = time.perf_counter() - started
    wait_for(lambda: counter(dash.base, "iotpipe_dashboard_stored_total") >= n, 600)
    dash_s = time.perf_counter() - started
    rss = dash.stop()
    return {
        "n": n,
        "dash_rate": n / dash_s,
        "sub_rate": n / sub_s,
        "ratio": sub_s / dash_s,
        "rss_mb": rss,
    }


def drain_sub(tmp: Path, port: int, n: int) -> dict[str, float]:
    """mosquitto_sub -q 1 -c draining the N readings queued in its persistent session."""
    proc = mosquitto_sub(tmp, port, "-c", "-i", "bench-sub", "-C", str(n))
    started = time.perf_counter()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return {"rate": n / seconds, "cpu_us": cpu / n * 1e6, "rss_mb": usage.ru_maxrss / 1024}


def paho_drain(tmp: Path, port: int, *args: str) -> dict[str, float]:
    """paho_drain.py (the same drain in Python on paho's public API) as the dashboard role."""
    env = dict(os.environ)
    env["IOTPIPE_MQTT_USER"], env["IOTPIPE_MQTT_PASSWORD"] = LOGINS["dashboard"]
    script = str(Path(__file__).with_name("paho_drain.py"))
    argv = [sys.executable, script, str(port), "bench-paho", "iotpipe/+/telemetry", *args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env)
    STARTED.append(proc)
    out, _ = proc.communicate(timeout=600)
    if proc.returncode:
        raise SystemExit(f"paho_drain.py failed ({proc.returncode})")
    return dict(json.loads(out)) if out.strip() else {}


def bench_backlog(tmp: Path, broker_port: int, n: int) -> dict[str, float]:
    """The dashboard's own capacity, beside mosquitto_sub's: N readings wait in each one's
    persistent session; each drains them alone, timed from its first (the dashboard's
    start-up is not counted)."""
    data = tmp / "backlog"
    Dashboard(tmp, broker_port, data).stop()  # creates the session and its subscriptions
    session = mosquitto_sub(tmp, broker_port, "-c", "-i", "bench-sub", "-W", "1")
    session.wait(30)  # its session and subscription exist now; it exits after 1 s
    paho_drain(tmp, broker_port, "--subscribe")
    publish_all(broker_port, n)
    sub = drain_sub(tmp, broker_port, n)
    paho = paho_drain(tmp, broker_port, "--drain", str(n))
    dash = Dashboard(tmp, broker_port, data)
    stored = 0
    while stored == 0:
        stored = counter(dash.base, "iotpipe_dashboard_stored_total")
    first, started, cpu0 = stored, time.perf_counter(), cpu_s(dash.proc.pid)
    wait_for(lambda: counter(dash.base, "iotpipe_dashboard_stored_total") >= n, 600)
    seconds = time.perf_counter() - started
    cpu = cpu_s(dash.proc.pid) - cpu0
    rate = (n - first) / seconds
    return {
        "n": n,
        "rate": rate,
        "cpu_us": cpu / (n - first) * 1e6,
        "rss_mb": dash.stop(),
        "sub_rate": sub["rate"],
        "sub_cpu_us": sub["cpu_us"],
        "sub_rss_mb": sub["rss_mb"],
        "ratio": rate / sub["rate"],
        "paho_alone_rate": paho["rate"],
        "paho_alone_cpu_us": paho["cpu_us"],
        "paho_alone_ratio": paho["rate"] / sub["rate"],
    }


def make_year(data: Path, rows: int) -> float:
    """A year (or ``rows`` seconds) of 1 Hz samples for one metric, written in SQL."""
    from iotpipe.dashboard.sqlite_store import SQLiteStore

    data.mkdir(parents=True, exist_ok=True)
    SQLiteStore(data / "history.sqlite3").close()  # the schema, as the dashboard makes it
    started = time.perf_counter()
    db = sqlite3.connect(data / "history.sqlite3")
    db.executescript(f"""
        PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;
        INSERT INTO series (id, device, metric) VALUES (1, 'bench', 'temperature');
        INSERT INTO devices (id, status, last_ts, last)
            VALUES ('bench', 'online', {T0 + rows - 1}, '{{"temperature": 20.0}}');
        WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i + 1 < {rows})
        INSERT INTO samples SELECT 1, {T0} + i, i, 20 + (i % 86400) / 8640.0
            + CASE WHEN i % 1000003 = 0 THEN 50 ELSE 0 END FROM c;
        INSERT INTO rollups SELECT 1, 60, CAST(ts / 60 AS INTEGER) * 60, count(*), sum(value),
            min(value), max(value) FROM samples GROUP BY 3;
        INSERT INTO rollups SELECT 1, 3600, bucket / 3600 * 3600, sum(n), sum(sum), min(min),
            max(max) FROM rollups WHERE res = 60 GROUP BY 3;
    """)
    db.close()
    return time.perf_counter() - started


def timed(url: str, runs: int = 21) -> tuple[float, int, str]:
    times, body = [], {}
    for _ in range(runs):
        started = time.perf_counter()
        body = json.loads(get(url))
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), len(body["t"]), body["source"]


def bench_series(tmp: Path, broker_port: int, rows: int) -> dict[str, object]:
    data = tmp / "year"
    made_s = make_year(data, rows)
    dash = Dashboard(tmp, broker_port, data)
    url = dash.base + "/api/devices/bench/series?metric=temperature&points=2000"
    spans = {"all": rows, "day": 86400, "hour": 3600}
    result: dict[str, object] = {"rows": rows, "make_s": made_s}
    for name, span in spans.items():
        result[name] = timed(f"{url}&since={T0}&until={T0 + span}")
    result["rss_mb"] = dash.stop()
    return result


def bench_latency(tmp: Path, broker_port: int, rate: float, seconds: float) -> dict[str, float]:
    dash = Dashboard(tmp, broker_port, tmp / "latency")
    arrived: dict[int, float] = {}
    conn = http.client.HTTPConnection("127.0.0.1", dash.port, timeout=30)
    conn.request("GET", "/api/stream")
    resp = conn.getresponse()

    def read() -> None:
        for raw in resp:
            if raw.startswith(b"data: "):
                arrived[json.loads(raw[6:])["seq"]] = time.perf_counter()

    threading.Thread(target=read, daemon=True).start()
    client = publisher(broker_port)
    sent: dict[int, float] = {}
    n = int(rate * seconds)
    start = time.perf_counter()
    for seq in range(n):
        time.sleep(max(0.0, start + seq / rate - time.perf_counter()))
        sent[seq] = time.perf_counter()
        client.publish("iotpipe/bench/telemetry", payload(seq, time.time()), 1)
    wait_for(lambda: len(arrived) >= n, 30)
    lat = sorted((arrived[s] - sent[s]) * 1000 for s in range(n))
    client.loop_stop()
    conn.close()
    rss = dash.stop()
    return {"n": n, "p50": lat[n // 2], "p99": lat[int(n * 0.99)], "max": lat[-1], "rss_mb": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--rows", type=int, default=YEAR)
    parser.add_argument("--skip-series", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as name:
        tmp = Path(name)
        port = free_port()
        iotpipe(tmp, "broker", "broker", "--port", str(port), "--data", str(tmp / "b"))
        try:
            wait_for(lambda: socket.create_connection(("127.0.0.1", port), 0.2).close() or 1)
            load_logins(tmp / "b")
            ingest = bench_ingest(tmp, port, args.readings)
            print("ingest:", json.dumps(ingest), flush=True)
            backlog = bench_backlog(tmp, port, args.readings)
            print("backlog:", json.dumps(backlog), flush=True)
            latency = bench_latency(tmp, port, 100.0, 10.0)
            print("latency:", json.dumps(latency), flush=True)
            if not args.skip_series:
                print("series:", json.dumps(bench_series(tmp, port, args.rows)), flush=True)
        finally:
            for proc in reversed(STARTED):
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(30)


if __name__ == "__main__":
    main()
