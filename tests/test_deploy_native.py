"""docker-compose.yml run natively, for machines without a container engine: the broker's
configuration under the real Mosquitto, and the services' very command lines (with the
container's addresses and paths swapped for free ports and a temporary directory), until a
virtual board's readings reach the dashboard and every health check passes."""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml

from iotpipe.healthcheck import check
from tests.conftest import ROOT, Procs, free_port, port_open, wait_until
from tests.test_deploy import interpolate

MOSQUITTO = "/usr/sbin/mosquitto"


def native_broker_config(tmp_path: Path, port: int) -> Path:
    """broker/docker.conf with the container's paths and listener made local."""
    text = (ROOT / "broker" / "docker.conf").read_text()
    text = text.replace("listener 1883", f"user {getpass.getuser()}\nlistener {port} 127.0.0.1")
    text = text.replace("/mosquitto/config", str(ROOT / "broker"))
    text = text.replace("/mosquitto/data/", f"{tmp_path / 'broker-data'}/")
    (tmp_path / "broker-data").mkdir()
    path = tmp_path / "docker.conf"
    path.write_text(text)
    return path


def localise(text: str, swaps: dict[str, str]) -> str:
    for container, host in swaps.items():
        text = text.replace(container, host)
    return text


def devices(http_port: int) -> list[dict[str, object]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/devices", timeout=5) as r:
        found: list[dict[str, object]] = json.loads(r.read())
        return found


def test_the_compose_services_run_natively_into_a_working_pipeline(
    procs: Procs, tmp_path: Path
) -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    mqtt, http, metrics = free_port(), free_port(), free_port()
    swaps = {
        "mqtt://broker:1883": f"mqtt://127.0.0.1:{mqtt}",
        "0.0.0.0:8080": f"127.0.0.1:{http}",
        "127.0.0.1:9101": f"127.0.0.1:{metrics}",
        "/tmp/board.tty": str(tmp_path / "board.tty"),
        "/data": str(tmp_path / "data"),
    }
    broker = services["broker"]["command"]
    assert broker[:2] == ["mosquitto", "-c"]
    procs.start("broker", [MOSQUITTO, "-c", str(native_broker_config(tmp_path, mqtt))])
    wait_until(lambda: port_open(mqtt), 10, "mosquitto with broker/docker.conf")
    health = [str(p) for p in services["broker"]["healthcheck"]["test"][1:]]
    probe = [health[0], "-p", str(mqtt), *[p.replace("$$", "$") for p in health[1:]]]
    assert subprocess.run(probe, capture_output=True, timeout=10).returncode == 0

    script = localise(interpolate(services["virtual-board"]["command"][0]), swaps)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    board = procs.start("virtual-board", ["sh", "-c", script], env={"PATH": path})
    dashboard_argv = [localise(interpolate(a), swaps) for a in services["dashboard"]["command"]]
    procs.iotpipe("dashboard", *dashboard_argv)
    try:
        wait_until(
            lambda: port_open(http) and any(d.get("last") for d in devices(http)),
            60,
            "a virtual board's reading in the dashboard",
        )
        assert [d["id"] for d in devices(http)] == ["virtual-1"]
        assert check(dashboard_argv) is None
        bridge_argv = script.split("exec iotpipe ")[1].split()
        wait_until(lambda: check(bridge_argv) is None, 20, "the bridge's health check")
    finally:
        # The script's background board is in the group the test started: stop it too.
        os.killpg(board.popen.pid, signal.SIGTERM)
