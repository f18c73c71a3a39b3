"""Nothing acknowledged is lost by the dashboard: acknowledged after commit, through a full
disk, a kill -9 during a backlog drain, a damaged history file and a first start.

Real Mosquitto, real dashboard processes, real files (a small tmpfs for the full disk);
every delivery is checked value by value through what a user gets back (the CSV export
and the series API), not by ids.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotpipe.topics import Telemetry
from tests import test_dashboard_support as support
from tests.conftest import ROOT, Broker, Procs, free_port, port_open, start_broker, wait_until
from tests.test_dashboard_support import (
    BOOT,
    Publisher,
    RunningDashboard,
    http,
    start_dashboard,
)

publisher = support.publisher  # fixture

T0 = float(int(time.time()) - 3600)  # an hour ago, whole: within retention, not ahead


def values(i: int) -> dict[str, float]:
    """What board reading ``i`` said: different for every reading, so a lost or
    overwritten value shows."""
    return {"temperature": 20 + i / 1000, "humidity": 40 + (i * 7 % 1000) / 100}


def send(publisher: Publisher, seqs: range) -> None:
    for i in seqs:
        publisher.reading(Telemetry("noloss", BOOT, i, T0 + i / 100, i * 10, values(i)))


def exported(dash: RunningDashboard) -> dict[tuple[int, str], float]:
    status, text = dash.get("/api/devices/noloss/export.csv")
    if status == 404:  # nothing of the device stored yet
        return {}
    assert status == 200, text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert all(r["boot"] == BOOT for r in rows)
    return {(int(r["seq"]), r["metric"]): float(r["value"]) for r in rows}


def stored(dash: RunningDashboard) -> int:
    return dash.metric("iotpipe_dashboard_stored_total")


def assert_every_value(dash: RunningDashboard, n: int) -> None:
    """Every value of readings 0..n-1, unchanged, in the export and in the series API."""
    wait_until(lambda: len(exported(dash)) >= 2 * n, 120, f"{n} readings in the export")
    got = exported(dash)
    want = {(i, m): v for i in range(n) for m, v in values(i).items()}
    assert got == want
    for first in range(0, n, 5000):  # the API answers at most 10,000 points a call
        last = min(n, first + 5000)
        since, until = T0 + first / 100 - 0.001, T0 + last / 100 - 0.001
        status, body = dash.get(
            f"/api/devices/noloss/series?metric=humidity&since={since}&until={until}&points=5000"
        )
        assert status == 200 and body["source"] == "raw", body
        want_t = [round(T0 + i / 100, 3) for i in range(first, last)]  # ms, as the API says
        assert body["t"] == want_t
        assert body["v"] == [values(i)["humidity"] for i in range(first, last)]


def healthz(dash: RunningDashboard) -> tuple[int, dict[str, object]]:
    status, body = dash.get("/healthz")
    return status, body if isinstance(body, dict) else {}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs of our own, unmounted afterwards whatever happened."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (run the chaos tests as root)")
    where = tmp_path / "disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk``; the file to remove to give them back."""
    filler = disk / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


@pytest.mark.chaos
def test_a_full_disk_stops_ingest_with_503_and_loses_nothing_once_space_returns(
    procs: Procs, broker: Broker, publisher: Publisher, small_disk: Path
) -> None:
    dash = start_dashboard(procs, broker, small_disk / "dash")
    wait_until(lambda: healthz(dash)[1].get("subscribed"), 30, "subscribed")
    send(publisher, range(200))
    wait_until(lambda: stored(dash) >= 200, 60, "the first readings stored")
    filler = fill(small_disk)
    send(publisher, range(200, 3000))
    wait_until(lambda: healthz(dash)[0] == 503, 120, "/healthz 503 on the full disk")
    _status, body = healthz(dash)
    assert body["store"] == "cannot_write" and "full" in str(body["reason"]), body
    wait_until(
        lambda: "history store cannot write" in dash.proc.output(), 30, "the state in the log"
    )
    assert "store_cannot_write 1" in str(dash.get("/metrics")[1])
    before = stored(dash)
    time.sleep(2)  # while the disk is full, nothing more is taken
    assert stored(dash) == before < 3000
    filler.unlink()
    wait_until(lambda: healthz(dash)[0] == 200, 120, "/healthz 200 once space is back")
    assert_every_value(dash, 3000)
    log = dash.proc.output()
    assert log.count("history store cannot write") == 1, log  # one line per state change
    assert "history store writes again" in log


@pytest.mark.chaos
def test_a_dashboard_killed_during_a_backlog_drain_loses_nothing(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path
) -> None:
    data = tmp_path / "dash"
    first = start_dashboard(procs, broker, data)
    wait_until(lambda: healthz(first)[1].get("subscribed"), 30, "subscribed")
    first.proc.stop()
    n = 20_000
    send(publisher, range(n))  # waits in the dashboard's session
    port = free_port()
    second = start_dashboard(procs, broker, data, name="dashboard-2", port=port)
    wait_until(lambda: stored(second) >= 1, 120, "the drain started")
    second.proc.popen.send_signal(signal.SIGKILL)
    second.proc.popen.wait(30)
    third = start_dashboard(procs, broker, data, name="dashboard-3", port=port)
    assert_every_value(third, n)


@pytest.mark.chaos
def test_a_damaged_history_file_is_kept_aside_and_a_new_store_works(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path
) -> None:
    data = tmp_path / "dash"
    dash = start_dashboard(procs, broker, data)
    send(publisher, range(2000))
    wait_until(lambda: stored(dash) >= 2000, 60, "readings stored")
    dash.proc.stop()
    history = data / "history.sqlite3"
    with history.open("r+b") as f:  # garbage over every page after the first
        size = f.seek(0, 2)
        f.seek(4096)
        f.write(os.urandom(size - 4096))
    doctor = subprocess.run(
        [".venv/bin/python", "-m", "iotpipe", "doctor", "--data", str(data), "--port", "1"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert f"history        {history} is damaged" in doctor.stdout, doctor.stdout
    dash = start_dashboard(procs, broker, data, name="dashboard-2")
    status, body = healthz(dash)
    assert status == 200 and body["store"] == "ok", body
    (aside,) = data.glob("history.sqlite3.damaged-*[0-9]Z")
    log = dash.proc.output()
    assert f"history file {history} is damaged" in log and str(aside) in log
    assert ".recover" in log
    send(publisher, range(2000, 2010))
    wait_until(lambda: len(exported(dash)) == 20, 60, "new readings in the new store")
    assert exported(dash) == {(i, m): v for i in range(2000, 2010) for m, v in values(i).items()}


def test_history_and_login_are_readable_by_their_owner_only(
    procs: Procs, broker: Broker, tmp_path: Path
) -> None:
    data = tmp_path / "dash"
    dash = start_dashboard(procs, broker, data)
    assert (data.stat().st_mode & 0o777) == 0o700
    assert (data / "history.sqlite3").stat().st_mode & 0o077 == 0
    assert (data / "login-url").stat().st_mode & 0o077 == 0
    token = dash.token
    assert token in (data / "login-url").read_text()
    assert token not in dash.proc.output()


def test_a_reading_from_the_future_is_refused_and_counted(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path
) -> None:
    dash = start_dashboard(procs, broker, tmp_path / "dash")
    publisher.reading(Telemetry("noloss", BOOT, 1, time.time() + 2 * 86400, 10, values(1)))
    publisher.reading(Telemetry("noloss", BOOT, 2, T0, 20, values(2)))
    wait_until(lambda: stored(dash) == 1, 30, "the plausible reading stored")
    metrics = str(dash.get("/metrics")[1])
    assert 'iotpipe_dashboard_rejected_total{reason="ts_in_future"} 1' in metrics, metrics
    assert exported(dash) == {(2, m): v for m, v in values(2).items()}
    assert "ts_in_future" in dash.proc.output()
    assert http(dash.url + "/healthz")[0] == 200


def test_a_fresh_up_stores_every_board_from_its_first_reading(procs: Procs, tmp_path: Path) -> None:
    mqtt_port, http_port, data = free_port(), free_port(), tmp_path / "data"
    up = procs.iotpipe(
        "up", "up", "--virtual", "5", "--rate", "10", "--mqtt-port", str(mqtt_port),
        "--http", f"127.0.0.1:{http_port}", "--data", str(data),
    )  # fmt: skip
    wait_until(lambda: "Press Ctrl-C" in up.output() or up.popen.poll() is not None, 180, "up")
    out = up.output()
    assert out.index("✓ dashboard") < out.index("✓ virtual-5") < out.index("✓ bridge "), out
    assert out.count("✓ bridge") == 1 and "5 port(s)" in out, "one bridge for every board"
    base = f"http://127.0.0.1:{http_port}"
    devices = [f"virtual-{n}" for n in range(1, 6)]

    def seqs(device: str) -> list[int]:
        status, text = http(f"{base}/api/devices/{device}/export.csv")
        if status != 200:
            return []
        rows = csv.DictReader(io.StringIO(str(text)))
        return sorted({int(r["seq"]) for r in rows})

    wait_until(lambda: all(len(seqs(d)) >= 20 for d in devices), 180, "20 readings a board")
    for device in devices:
        got = seqs(device)
        assert got == list(range(len(got))), (device, got[:20])  # from seq 0, no gap
    assert (data.stat().st_mode & 0o777) == 0o700
    logs = list((data / "logs").iterdir())
    assert logs and all(p.stat().st_mode & 0o077 == 0 for p in logs)
    token = (data / "dashboard" / "api-token").read_text().strip()
    assert not any(token in p.read_text(errors="replace") for p in logs)
    up.stop(signal.SIGINT, 60)


@pytest.mark.chaos
def test_postgresql_gone_stops_ingest_with_503_and_loses_nothing_once_it_is_back(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path
) -> None:
    server = support.start_postgres()
    try:
        url = server.new_database()
        pg_ctl = [str(server.bindir / "pg_ctl"), "-D", str(server.root / "data"), "-w"]
        port = url.rsplit(":", 1)[1].split("/")[0]
        opts = f"-p {port} -k {server.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        dash = start_dashboard(procs, broker, tmp_path / "dash", "--store", url)
        send(publisher, range(200))
        wait_until(lambda: stored(dash) >= 200, 60, "the first readings stored")
        nobody = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
        subprocess.run([*nobody, *pg_ctl, "-m", "fast", "stop"], check=True, timeout=60)
        send(publisher, range(200, 1000))
        wait_until(lambda: healthz(dash)[0] == 503, 120, "/healthz 503 without PostgreSQL")
        assert healthz(dash)[1]["store"] == "cannot_write"
        log = [*pg_ctl, "-l", str(server.root / "log"), "-o", opts, "start"]
        subprocess.run([*nobody, *log], check=True, capture_output=True, timeout=60)
        wait_until(lambda: healthz(dash)[0] == 200, 120, "/healthz 200 once it is back")
        assert_every_value(dash, 1000)
    finally:
        server.stop()


LOST = "iotpipe_dashboard_sessions_lost_total"


def sessions_lost(dash: RunningDashboard) -> int:
    assert LOST + " " in str(dash.get("/metrics")[1]), f"no {LOST} in /metrics"
    return dash.metric(LOST)


def kill_and_restart(procs: Procs, broker: Broker) -> Broker:
    broker.proc.stop(signal.SIGKILL)
    return start_broker(procs, broker.data, broker.port, insecure=True)


@pytest.mark.chaos
def test_a_broker_that_forgot_the_dashboards_session_is_reported(
    procs: Procs, broker: Broker, tmp_path: Path
) -> None:
    # Killed before its first save (autosave_interval), Mosquitto restarts without the
    # dashboard's subscription: what was sent until the dashboard subscribes again is lost,
    # so it says so. Once saved (SIGUSR1, as `iotpipe up` asks), a kill keeps the session.
    dash = start_dashboard(procs, broker, tmp_path / "dash")
    wait_until(lambda: healthz(dash)[1].get("subscribed"), 30, "subscribed")
    assert sessions_lost(dash) == 0
    broker = kill_and_restart(procs, broker)
    wait_until(lambda: sessions_lost(dash) == 1, 60, "the lost session reported")
    assert "had forgotten this dashboard's session" in dash.proc.output()
    wait_until(lambda: healthz(dash)[1].get("subscribed"), 60, "subscribed again")

    broker.proc.popen.send_signal(signal.SIGUSR1)
    wait_until(lambda: (broker.data / "mosquitto.db").exists(), 10, "a broker save")
    broker = kill_and_restart(procs, broker)
    wait_until(lambda: dash.proc.output().count("session present: True") >= 1, 60, "reconnect")
    assert sessions_lost(dash) == 1


# The last release before the transport and the layout changed (issue 13): its dashboard held
# an MQTT 5 session, today's ingest resumes it as MQTT 3.1.1 under the same client id.
PREVIOUS_RELEASE = "b0b049b"


def _previous_release(tmp_path: Path) -> Path:
    """That release's host code as the importable package it installed as: its top-level
    bridge/, dashboard/ and broker/ were mapped into iotpipe/ by setuptools."""
    old = tmp_path / "previous"
    old.mkdir()
    archive = subprocess.run(
        [
            "git",
            "-C",
            str(ROOT),
            "archive",
            PREVIOUS_RELEASE,
            "iotpipe",
            "bridge",
            "dashboard",
            "broker",
        ],
        capture_output=True,
        timeout=60,
    )
    if archive.returncode != 0:
        pytest.skip(f"no git history with {PREVIOUS_RELEASE} here: {archive.stderr!r}")
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    for part in ("bridge", "dashboard", "broker"):
        (old / part).rename(old / "iotpipe" / part)
    return old


@pytest.mark.chaos
def test_readings_queued_for_the_previous_releases_session_are_stored_value_by_value(
    procs: Procs, broker: Broker, publisher: Publisher, tmp_path: Path
) -> None:
    old, data, port = _previous_release(tmp_path), tmp_path / "dash", free_port()
    argv = [sys.executable, "-P", "-m", "iotpipe", "dashboard", "--broker", broker.url]
    argv += ["--http", f"127.0.0.1:{port}", "--data", str(data)]
    previous = RunningDashboard(
        procs.start("old-dashboard", argv, {"PYTHONPATH": str(old)}), port, data
    )
    wait_until(lambda: port_open(port) or previous.proc.popen.poll() is not None, 60, "old one up")
    assert previous.proc.popen.poll() is None, previous.proc.output()
    wait_until(lambda: healthz(previous)[1].get("subscribed"), 60, "the old dashboard subscribed")
    n = 3000
    send(publisher, range(n // 3))  # stored by the old release in its history file
    wait_until(lambda: stored(previous) >= n // 3, 60, "the old release storing")
    assert previous.proc.stop() == 0, previous.proc.output()
    assert "iotpipe.dashboard.runtime" in previous.proc.output(), "not the old release's code"
    send(publisher, range(n // 3, n))  # queued in the old release's MQTT 5 session
    dash = start_dashboard(procs, broker, data, name="dashboard-new", port=port)
    assert_every_value(dash, n)
    assert "Traceback" not in dash.proc.output()
