"""`iotpipe up`: the main job, as the README's first command runs it."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from pathlib import Path

from tests.conftest import Procs, Subscriber, free_port, wait_until


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _processes_using(path: Path) -> list[str]:
    ps = subprocess.run(
        ["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True, check=True
    )
    return [line for line in ps.stdout.splitlines() if str(path) in line]


def test_up_runs_the_whole_pipeline_and_ctrl_c_stops_every_part(
    procs: Procs, tmp_path: Path
) -> None:
    mqtt_port, http_port, data = free_port(), free_port(), tmp_path / "data"
    up = procs.iotpipe(
        "up",
        "up",
        "--virtual",
        "2",
        "--rate",
        "10",
        "--mqtt-port",
        str(mqtt_port),
        "--http",
        f"127.0.0.1:{http_port}",
        "--data",
        str(data),
    )
    wait_until(lambda: "Press Ctrl-C" in up.output() or up.popen.poll() is not None, 90, "start-up")
    out = up.output()
    assert "✓ broker" in out and "✓ dashboard" in out, out
    assert "first reading from virtual-1" in out and "first reading from virtual-2" in out
    bridges = [line for line in _processes_using(data) if " bridge " in line]
    assert len(bridges) == 1, "one bridge process serves both boards"
    assert bridges[0].count("--serial") == 2, bridges
    assert f"http://127.0.0.1:{http_port}/" in out
    # the broker saved the dashboard's session as soon as it subscribed, not a minute later
    saved = data / "broker" / "mosquitto.db"
    wait_until(lambda: saved.exists() and b"iotpipe-dashboard-" in saved.read_bytes(), 20, "save")

    assert "mosquitto_sub -p" in out and "-u iotpipe-reader -P" in out
    assert "/login?token=" in out
    reader = json.loads((data / "broker" / "credentials" / "reader.json").read_text())
    # what `mosquitto_sub -u iotpipe-reader -P … -t 'iotpipe/#'` sees: `up` locks the broker
    sub = Subscriber(mqtt_port, "iotpipe/#", (reader["user"], reader["password"]))
    try:
        wait_until(lambda: len(sub.on("virtual-2/telemetry")) >= 3, 20, "telemetry")
    finally:
        sub.close()

    def devices_with_history() -> bool:
        listed = _get(f"http://127.0.0.1:{http_port}/api/devices")
        assert isinstance(listed, list)
        return {d["id"] for d in listed if d.get("last")} == {"virtual-1", "virtual-2"}

    wait_until(devices_with_history, 20, "both devices in /api/devices")
    series = _get(
        f"http://127.0.0.1:{http_port}/api/devices/virtual-1/series?metric=temperature&points=50"
    )
    assert isinstance(series, dict) and 0 < len(series["t"]) <= 50

    assert _processes_using(data), "children run with the data dir in their arguments"
    up.popen.send_signal(signal.SIGINT)
    assert up.popen.wait(30) == 0
    assert "stopped." in up.output()
    assert _processes_using(data) == [], "every child stopped"


def test_up_refuses_a_busy_mqtt_port_with_advice(procs: Procs, tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        up = procs.iotpipe("up", "up", "--mqtt-port", str(port), "--data", str(tmp_path))
        assert up.popen.wait(30) == 1
    assert f"MQTT port {port} is already in use" in up.output()
    assert "--mqtt-port" in up.output()
