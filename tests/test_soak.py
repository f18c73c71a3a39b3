"""The soak of issue 12: for a couple of minutes at 100 readings/s, ``kill -9`` the bridge,
the dashboard and the broker at random moments from a seeded schedule, restarting each;
at the end every reading from seq 0 is in the dashboard's history exactly once, with the
values the board wrote — read back through the CSV export and the series API.

The seed is printed; ``IOTPIPE_SOAK_SEED=<seed>`` replays a schedule, ``IOTPIPE_SOAK_S``
changes its length (default 100 s of faults, about 3 minutes in all).

One fact of Mosquitto 2.0 shapes the start, a bound of the broker stated in
docs/bridge.md: it writes its sessions to disk every ``autosave_interval`` (60 s), so a
broker killed before its first save forgets the dashboard's subscription, and what the
bridge sends before the dashboard subscribes again has no one to go to (the dashboard
reports it: ``sessions_lost``). So the broker is asked to save once (SIGUSR1) after the
dashboard subscribed, as ``iotpipe up`` does. Later saves are the broker's own; what it
acknowledged since its last one, the bridge keeps (``--keep-acked``) and sends again after
it reconnects, so faults may come at any moment, one right after another.
"""

from __future__ import annotations

import csv
import io
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import (
    Proc,
    Procs,
    free_port,
    start_bridge,
    start_broker,
    start_virtual_board,
    wait_until,
)
from tests.noloss_support import board_series
from tests.test_dashboard_support import RunningDashboard, http, start_dashboard

pytestmark = pytest.mark.chaos

DEVICE = "soak"
RATE = 100.0
VICTIMS = ("bridge", "dashboard", "broker")


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the start
    victim: str
    down: float  # seconds before it is started again


def schedule(seed: int, length: float) -> list[Fault]:
    rng = random.Random(seed)
    faults, t = [], rng.uniform(2, 6)
    while t < length:
        faults.append(Fault(t, rng.choice(VICTIMS), rng.uniform(0.1, 4.0)))
        t += faults[-1].down + rng.uniform(0.5, 8)
    return faults


class Pipeline:
    def __init__(self, procs: Procs, tmp: Path) -> None:
        self.procs, self.tmp = procs, tmp
        self.broker = start_broker(procs, tmp / "broker", free_port(), insecure=True)
        self.dash_port = free_port()
        self.dashboard = self._dashboard()
        wait_until(self._subscribed, 30, "the dashboard subscribed")
        self.broker.proc.popen.send_signal(signal.SIGUSR1)  # as `iotpipe up` does: see above
        saved = self.broker.data / "mosquitto.db"
        wait_until(saved.exists, 30, "the broker's first save")
        self.board = start_virtual_board(procs, tmp / "tty", DEVICE, RATE)
        self.restarts = 0
        self.bridge = self._bridge()

    def _subscribed(self) -> bool:
        body = self.dashboard.get("/healthz")[1]
        return isinstance(body, dict) and bool(body.get("subscribed"))

    def _dashboard(self) -> RunningDashboard:
        return start_dashboard(
            self.procs, self.broker, self.tmp / "dash", name="dashboard", port=self.dash_port
        )

    def _bridge(self) -> Proc:
        spool = ("--spool", str(self.tmp / "spool"))  # the same spool across restarts
        return start_bridge(
            self.procs, self.tmp, self.tmp / "tty", self.broker.url, *spool, name="bridge"
        )

    def kill(self, victim: str) -> None:
        proc = {
            "bridge": self.bridge,
            "dashboard": self.dashboard.proc,
            "broker": self.broker.proc,
        }[victim]
        proc.stop(signal.SIGKILL)

    def start(self, victim: str) -> None:
        self.restarts += 1
        if victim == "bridge":
            self.bridge = self._bridge()
        elif victim == "dashboard":
            self.dashboard = self._dashboard()
        else:
            self.broker = start_broker(self.procs, self.broker.data, self.broker.port, True)


def _export(dash: RunningDashboard) -> dict[str, dict[int, float]]:
    """metric -> seq -> value, from the CSV export; fails on a reading stored twice."""
    status, text = http(f"{dash.url}/api/devices/{DEVICE}/export.csv")
    assert status == 200, text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and {"boot", "seq"} <= set(rows[0]), (
        f"the export names no reading (columns {list(rows[0]) if rows else []}): "
        "it needs the (device, boot, seq) columns"
    )
    out: dict[str, dict[int, float]] = {}
    for row in rows:
        seqs = out.setdefault(row["metric"], {})
        seq = int(row["seq"])
        assert seq not in seqs, f"reading {seq} of {row['metric']} is stored twice"
        seqs[seq] = float(row["value"])
    return out


def _series(dash: RunningDashboard, metric: str, since: float, until: float) -> list[float]:
    """Every raw value of ``metric`` from the series API, in windows small enough for it
    to answer with raw samples."""
    values: list[float] = []
    step = 30.0
    start = since
    while start < until:
        end = min(start + step, until)
        query = f"metric={metric}&since={start}&until={end}&points=10000"
        status, body = http(f"{dash.url}/api/devices/{DEVICE}/series?{query}")
        assert status == 200, body
        assert body["source"] in ("raw", "samples"), body["source"]
        values += [v for v in body["v"] if v is not None]
        start = end
    return values


def _prefix(dash: RunningDashboard) -> int:
    """The highest seq up to which every reading is stored, for every metric (-1: none)."""
    try:
        got = _export(dash)
    except OSError:  # not answering at this moment; a stored-twice reading fails the test
        return -1
    tops = []
    for seqs in got.values():
        n = 0
        while n in seqs:
            n += 1
        tops.append(n - 1)
    return min(tops, default=-1)


def _highest(dash: RunningDashboard) -> int:
    return max((max(s) for s in _export(dash).values() if s), default=-1)


def test_soak_kill_9_of_bridge_dashboard_and_broker_loses_nothing_and_stores_each_once(
    procs: Procs, tmp_path: Path
) -> None:
    seed = int(os.environ.get("IOTPIPE_SOAK_SEED") or random.randrange(2**32))
    length = float(os.environ.get("IOTPIPE_SOAK_S") or 100)
    faults = schedule(seed, length)
    print(f"soak seed {seed} (replay with IOTPIPE_SOAK_SEED={seed}), {len(faults)} faults")
    pipeline = Pipeline(procs, tmp_path)
    began_wall = time.time()
    began = time.monotonic()
    for fault in faults:
        delay = began + fault.at - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the schedule itself, not a wait for a condition
        print(f"{time.monotonic() - began:6.1f} s: kill -9 {fault.victim}, {fault.down:.1f} s down")
        pipeline.kill(fault.victim)
        time.sleep(fault.down)
        pipeline.start(fault.victim)
    # Everything stored when the faults ended, and what came since, with no hole.
    ended = _highest(pipeline.dashboard)
    try:
        wait_until(lambda: _prefix(pipeline.dashboard) > ended + 2 * RATE, 240, "no hole")
    except AssertionError:
        holes = {
            metric: sorted(set(range(max(seqs) + 1)) - set(seqs))[:20]
            for metric, seqs in _export(pipeline.dashboard).items()
        }
        pytest.fail(f"readings never stored (seed {seed}): {holes}")
    pipeline.board.stop()  # the series is final now: compare it whole
    last: list[dict[str, dict[int, float]]] = [{}]

    def settled() -> bool:
        now = _export(pipeline.dashboard)
        same = now == last[0]
        last[0] = now
        return same

    wait_until(settled, 60, "the last readings stored")
    stored = last[0]
    top = max(max(seqs) for seqs in stored.values())
    expected = board_series(DEVICE, top + 1)
    for metric, seqs in stored.items():
        missing = sorted(set(range(top + 1)) - set(seqs))
        assert not missing, f"{metric}: readings {missing[:20]} never stored"
        wrong = [s for s in range(top + 1) if seqs[s] != expected[s][metric]]
        assert not wrong, f"{metric}: values differ from the board's at seqs {wrong[:20]}"
        served = _series(pipeline.dashboard, metric, began_wall - 60, time.time() + 60)
        assert sorted(served) == sorted(seqs.values()), (
            f"{metric}: the series API serves {len(served)} values, the export {len(seqs)}"
        )
    print(f"soak: {top + 1} readings stored once each with the board's values, {len(faults)} kills")
