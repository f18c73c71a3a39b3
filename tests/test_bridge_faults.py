"""The bridge under faults of its own disk and process: a full disk, a start on a full
disk, a damaged spool file, and many ``kill -9`` between reading and committing — each
with the real Mosquitto, the real firmware on the virtual board and real files, and each
ending with what a subscriber got compared, value by value, with what the board wrote."""

from __future__ import annotations

import random
import signal
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import (
    Procs,
    free_port,
    start_bridge,
    start_broker,
    start_virtual_board,
    wait_until,
)
from tests.noloss_support import Telemetry, fill, small_disk
from tests.test_bridge import Requester

pytestmark = pytest.mark.chaos


def _counter(port: int, name: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith(f"iotpipe_bridge_{name}")
    )


def _pings(port: int, device: str) -> bool:
    """The bridge carries a command to the board and its answer back."""
    asker = Requester(port, f"answers/{device}")
    try:
        asker.ask(f"iotpipe/{device}/cmd", b'{"id":"p","cmd":"ping"}', b"p")
        wait_until(lambda: b"p" in asker.by_correlation(), 20, "the answer to a ping")
        return bool(asker.by_correlation()[b"p"]["ok"])
    finally:
        asker.close()


def test_a_full_disk_stops_storing_not_reading_and_nothing_is_lost_when_space_returns(
    procs: Procs, tmp_path: Path
) -> None:
    device = "fulldisk"
    with small_disk(tmp_path / "disk") as disk:
        broker = start_broker(procs, tmp_path / "broker", free_port(), insecure=True)
        got = Telemetry(broker.port, device)
        start_virtual_board(procs, tmp_path / "tty", device, 50.0)
        metrics = free_port()
        spool = ("--spool", str(disk / "spool"), "--metrics", f"127.0.0.1:{metrics}")
        bridge = start_bridge(procs, tmp_path, tmp_path / "tty", broker.url, *spool)
        wait_until(lambda: got.highest() >= 50, 60, "readings before the disk fills")
        filler = fill(disk)
        wait_until(lambda: "spool_cannot_write" in bridge.output(), 30, "the full disk noticed")
        assert "reason=disk_full" in bridge.output()
        assert _pings(broker.port, device), "commands work while nothing can be stored"
        wait_until(lambda: _counter(metrics, "not_stored") >= 50, 30, "readings not stored")
        assert bridge.popen.poll() is None, "the bridge is still running"
        before = got.highest()
        filler.unlink()
        wait_until(lambda: "spool_writable" in bridge.output(), 30, "the spool writable again")
        wait_until(lambda: got.highest() >= before + 150, 60, "readings after the recovery")
        missing = got.check_against_board(device)
        assert missing == 0, f"{missing} readings reported missing: the board's ring held them"
        assert "Traceback" not in bridge.output()
        got.close()
        procs.stop_all()


def test_a_bridge_started_on_a_full_disk_runs_and_stores_once_space_returns(
    procs: Procs, tmp_path: Path
) -> None:
    device = "fullstart"
    with small_disk(tmp_path / "disk") as disk:
        broker = start_broker(procs, tmp_path / "broker", free_port(), insecure=True)
        got = Telemetry(broker.port, device)
        start_virtual_board(procs, tmp_path / "tty", device, 50.0)
        spool = ("--spool", str(disk / "spool"))
        first = start_bridge(procs, tmp_path, tmp_path / "tty", broker.url, *spool)
        wait_until(lambda: got.highest() >= 30, 60, "readings from the first run")
        first.stop(signal.SIGTERM)
        filler = fill(disk)
        again = start_bridge(procs, tmp_path, tmp_path / "tty", broker.url, *spool, name="again")
        wait_until(lambda: "port_open" in again.output(), 30, "the port opened on a full disk")
        assert _pings(broker.port, device), "commands work while the spool cannot open"
        assert again.popen.poll() is None and "spool_cannot_write" in again.output()
        before = got.highest()
        filler.unlink()
        wait_until(lambda: got.highest() >= before + 150, 60, "readings once space returned")
        assert got.check_against_board(device) == 0
        assert "Traceback" not in again.output()
        got.close()
        procs.stop_all()


def test_a_damaged_spool_file_is_kept_aside_and_a_new_spool_takes_over(
    procs: Procs, tmp_path: Path
) -> None:
    device = "damaged"
    broker = start_broker(procs, tmp_path / "broker", free_port(), insecure=True)
    got = Telemetry(broker.port, device)
    spool_dir = tmp_path / "bridge-spool"
    spool_dir.mkdir()
    (spool_dir / "spool.sqlite").write_bytes(b"SQLite format 3\0" + b"\xde\xad" * 4000)
    start_virtual_board(procs, tmp_path / "tty", device, 50.0)
    bridge = start_bridge(procs, tmp_path, tmp_path / "tty", broker.url)
    wait_until(lambda: got.highest() >= 100, 60, "readings through the new spool")
    log = bridge.output()
    (line,) = [x for x in log.splitlines() if "spool_damaged" in x]
    kept = line.split("kept_as=")[1].split()[0]
    assert Path(kept).name.startswith("spool.sqlite.damaged-") and Path(kept).exists()
    assert "starting a new spool" in line
    assert Path(kept).read_bytes().startswith(b"SQLite format 3\0\xde\xad")
    assert got.check_against_board(device) == 0
    doctor = procs.iotpipe("doctor", "doctor", "--spool", str(spool_dir))
    doctor.popen.wait(60)
    assert "damaged" in doctor.output() and kept in doctor.output(), doctor.output()
    got.close()


def test_many_kill_9_between_reading_and_committing_lose_nothing_silently(
    procs: Procs, tmp_path: Path
) -> None:
    device = "killed"
    seed = random.randrange(2**32)
    print(f"kill schedule seed: {seed}")
    rng = random.Random(seed)
    broker = start_broker(procs, tmp_path / "broker", free_port(), insecure=True)
    got = Telemetry(broker.port, device)
    start_virtual_board(procs, tmp_path / "tty", device, 200.0)
    spool = ("--spool", str(tmp_path / "spool"))  # the one every bridge in turn uses
    for n in range(25):
        bridge = start_bridge(procs, tmp_path, tmp_path / "tty", broker.url, *spool, name=f"b{n}")
        wait_until(lambda b=bridge: "device_online" in b.output(), 30, "the bridge reading")
        target = got.highest() + rng.randrange(20, 200)
        wait_until(lambda t=target: got.highest() >= t, 60, "readings between kills")
        bridge.stop(signal.SIGKILL)
    last = start_bridge(procs, tmp_path, tmp_path / "tty", broker.url, *spool, name="last")
    top = got.highest()
    wait_until(lambda: got.highest() >= top + 400, 60, "readings after the last restart")
    missing = got.check_against_board(device)
    print(f"{missing} readings reported missing")
    assert missing == 0, "the board's ring held every reading a killed bridge had not committed"
    assert "Traceback" not in last.output()
    got.close()
