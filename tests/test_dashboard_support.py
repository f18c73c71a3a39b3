"""Shared parts for the dashboard tests (no tests here): readings, stores, a running
dashboard process, an MQTT publisher and plain HTTP calls.

Each store test runs against every backend that can be had on this machine: SQLite always,
PostgreSQL when its server binaries are installed (a throwaway cluster is started in
tmp_path; skipped with the reason otherwise).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from iotpipe.dashboard.store import Store, open_store
from iotpipe.topics import Telemetry
from tests.conftest import Broker, Proc, Procs, free_port, port_open, wait_until

BOOT = "0a1b2c3d"


def reading(device: str, seq: int, ts: float, boot: str = BOOT, **metrics: float) -> Telemetry:
    return Telemetry(device, boot, seq, ts, seq * 1000, metrics or {"temperature": 20.0})


def pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@dataclass
class Postgres:
    url: str
    root: Path
    bindir: Path
    created: int = 0

    def new_database(self) -> str:
        """A fresh, empty database per test, so tests never see each other's rows."""
        import psycopg

        self.created += 1
        name = f"t{self.created}"
        with psycopg.connect(self.url + "/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"{self.url}/{name}"

    def stop(self) -> None:
        pg_ctl = [str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast"]
        subprocess.run([*_as_nobody(), *pg_ctl, "stop"], capture_output=True, timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


def _as_nobody() -> list[str]:
    """PostgreSQL refuses to run as root."""
    return ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []


def start_postgres() -> Postgres:
    """A throwaway PostgreSQL cluster on a free loopback port."""
    bindir = pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'psycopg[binary]')")
    root = Path(tempfile.mkdtemp(prefix="iotpipe-pg-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "nobody")
    port = free_port()
    initdb = [str(bindir / "initdb"), "-D", str(root / "data"), "-U", "iotpipe", "-A", "trust"]
    subprocess.run([*_as_nobody(), *initdb], check=True, capture_output=True, timeout=120)
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "log")]
    subprocess.run(
        [*_as_nobody(), *pg_ctl, "-o", opts, "-w", "start"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return Postgres(f"postgresql://iotpipe@127.0.0.1:{port}", root, bindir)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "data")
    server: Postgres = request.getfixturevalue("postgres")
    return server.new_database()


@pytest.fixture
def store(store_location: str) -> Iterator[Store]:
    opened = open_store(store_location)
    yield opened
    opened.close()


def http(
    url: str,
    body: Any = None,
    method: str | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """(status, parsed JSON or text) for a GET, or a POST when ``body`` is given."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            status, raw, kind = resp.status, resp.read(), resp.headers.get_content_type()
    except urllib.error.HTTPError as err:
        status, raw, kind = err.code, err.read(), err.headers.get_content_type()
    return status, json.loads(raw) if kind == "application/json" else raw.decode()


@dataclass
class RunningDashboard:
    proc: Proc
    port: int
    data: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, Any]:
        return http(self.url + path)

    def metric(self, sample: str) -> int:
        """One sample of /metrics, ``name`` or ``name{labels}``; 0 while it is not there.
        prometheus_client writes counts as floats (40.0)."""
        for line in str(self.get("/metrics")[1]).splitlines():
            if line.startswith(sample + " "):
                return int(float(line.split()[1]))
        return 0

    @property
    def token(self) -> str:
        """The API token the dashboard made on its first start (DATA/api-token)."""
        return (self.data / "api-token").read_text().strip()


def start_dashboard(
    procs: Procs,
    broker: Broker,
    data: Path,
    *extra: str,
    name: str = "dashboard",
    port: int | None = None,
) -> RunningDashboard:
    port = port or free_port()
    proc = procs.iotpipe(
        name,
        "dashboard",
        "--broker",
        broker.url,
        "--http",
        f"127.0.0.1:{port}",
        "--data",
        str(data),
        *extra,
    )
    wait_until(lambda: port_open(port) or proc.popen.poll() is not None, 20, "dashboard")
    assert proc.popen.poll() is None, proc.output()
    running = RunningDashboard(proc, port, data)
    wait_until(lambda: running.get("/healthz")[1]["mqtt_connected"], 10, "dashboard on MQTT")
    return running


class Publisher:
    def __init__(self, broker: Broker) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def reading(self, r: Telemetry, base: str = "iotpipe") -> None:
        self.send(f"{base}/{r.device}/telemetry", r.to_json())

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def publisher(broker: Broker) -> Iterator[Publisher]:
    pub = Publisher(broker)
    yield pub
    pub.close()
