"""A board on Wi-Fi loses nothing when Mosquitto is killed: what the broker acknowledged
after its last save, and lost with it, the board sends again after it reconnects
(firmware/backlog.py, kept copies). The real MicroPython unix port as a virtual board, the
real Mosquitto killed with SIGKILL and restarted on the same port and data, and a
persistent-session subscriber away meanwhile, as the dashboard may be."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from tests.conftest import Procs, Subscriber, free_port, start_broker, wait_until
from tests.noloss_support import Telemetry, board_series
from tests.test_firmware_mqtt import start_wifi_board, telemetry

DEVICE = "wifi-kill"
AFTER_SAVE = 30  # readings acknowledged between the broker's save and its kill


def test_readings_acknowledged_after_the_brokers_last_save_survive_a_kill_9(
    procs: Procs, tmp_path: Path
) -> None:
    port = free_port()
    data = tmp_path / "broker"
    broker = start_broker(procs, data, port=port, insecure=True)
    keeper = Telemetry(port, DEVICE, "keeper-" + DEVICE)
    keeper.close()  # away: the broker queues every reading for its session
    live = Subscriber(port, f"iotpipe/{DEVICE}/telemetry")

    def highest() -> int:
        return max((r.seq for r in telemetry(live)), default=-1)

    # 1000 readings at 5 Hz: room for every copy kept while the broker is away.
    start_wifi_board(procs, broker, DEVICE, "--buffer-max", "1000", rate=5.0)
    wait_until(lambda: highest() >= 5, 15, "the first readings")
    db = data / "mosquitto.db"
    before = db.stat().st_mtime_ns if db.exists() else 0
    os.kill(broker.proc.popen.pid, signal.SIGUSR1)  # Mosquitto saves now
    wait_until(lambda: db.exists() and db.stat().st_mtime_ns != before, 10, "the save")
    saved = highest()
    # The board waits for each PUBACK before it sends the next, so a reading seen means
    # the one before it was acknowledged.
    wait_until(lambda: highest() > saved + AFTER_SAVE, 20, "readings after the save")
    broker.proc.stop(signal.SIGKILL)
    acknowledged = highest() - 1
    live.close()
    start_broker(procs, data, port=port, insecure=True)
    keeper = Telemetry(port, DEVICE, "keeper-" + DEVICE)
    try:
        with contextlib.suppress(AssertionError):
            wait_until(lambda: keeper.highest() > acknowledged + 5, 20, "readings after")
        missing = sorted(set(range(keeper.highest() + 1)) - keeper.seqs())
        assert not missing, (
            f"lost with the broker ({saved} saved, {acknowledged} acknowledged): {missing}"
        )
        assert keeper.highest() > acknowledged
        assert not keeper.conflicts, "a reading sent again had other values"
        (boot,) = keeper.boots()
        expected = board_series(DEVICE, keeper.highest() + 1)
        got = [keeper.values[(boot, seq)] for seq in range(keeper.highest() + 1)]
        wrong = [seq for seq, metrics in enumerate(got) if metrics != expected[seq]]
        assert not wrong, f"values differ from the board's at {wrong[:10]}"
    finally:
        keeper.close()
