"""docker-compose.yml run natively, for machines without a container engine: the init
service's script, the broker's configuration under the real Mosquitto, and the services'
very command lines — with the container's addresses swapped for free ports, and each named
volume for one temporary folder that every service mounting it shares — until a virtual
board's readings reach the dashboard, logged in with the credentials init handed out, and
every health check passes."""

from __future__ import annotations

import getpass
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from iotpipe.healthcheck import check
from tests.conftest import ROOT, Proc, Procs, Subscriber, free_port, port_open, wait_until
from tests.test_deploy import interpolate

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_UID, IMAGE_UID = 1883, 1000  # the eclipse-mosquitto image's user; the Dockerfile's

pytestmark = pytest.mark.usefixtures("isolated_settings")


def localise(text: str, swaps: dict[str, str]) -> str:
    """Each container path or address in text replaced in one pass, the longest first, so a
    replacement is never replaced again and /data does not match inside /mosquitto/data."""
    if not swaps:
        return text
    names = sorted(swaps, key=len, reverse=True)
    pattern = "|".join(rf"{re.escape(n)}(?![\w.-])" for n in names)
    return re.sub(pattern, lambda m: swaps[m[0]], text)


def mounts(service: dict[str, Any], volumes: Path) -> dict[str, str]:
    """A service's mounts as swaps: a named volume to its folder under ``volumes`` (the same
    for every service that mounts it), a bind of the repo to the repo."""
    swaps = {}
    for mount in service.get("volumes", []):
        source, target = interpolate(mount).split(":")[:2]
        if source.startswith("./"):
            swaps[target] = str(ROOT / source)
        elif not source.startswith("/"):
            swaps[target] = str(volumes / source)
    return swaps


def native_broker_config(broker: dict[str, Any], volumes: Path, port: int, tls: int) -> Path:
    """iotpipe/broker/docker.conf with the container's paths and listeners made local."""
    text = (ROOT / "iotpipe" / "broker" / "docker.conf").read_text()
    text = text.replace("listener 1883", f"user {getpass.getuser()}\nlistener {port} 127.0.0.1")
    text = text.replace("listener 8883", f"listener {tls} 127.0.0.1")
    path = volumes.parent / "docker.conf"
    path.write_text(localise(text, mounts(broker, volumes)))
    return path


def devices(http_port: int) -> list[dict[str, object]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/devices", timeout=5) as r:
        found: list[dict[str, object]] = json.loads(r.read())
        return found


def owner_and_mode(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_uid, stat.st_gid, stat.st_mode & 0o777


def with_venv_path() -> dict[str, str]:
    """So a script's `iotpipe` is this checkout's, as it is the image's in a container."""
    return {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def run_init(init: dict[str, Any], volumes: Path) -> None:
    assert init["entrypoint"] == ["sh", "-c"]
    script = localise(interpolate(init["command"][0]), mounts(init, volumes))
    env = {**os.environ, **with_venv_path()}
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr


def assert_handed_out(volumes: Path) -> None:
    broker = volumes / "broker-data"
    for name in ("passwd", "acl", "tls/server.key"):  # read by Mosquitto as its own user
        assert owner_and_mode(broker / name) == (MOSQUITTO_UID, MOSQUITTO_UID, 0o600), name
    assert owner_and_mode(broker)[:2] == (MOSQUITTO_UID, MOSQUITTO_UID)  # it saves state here
    wanted = {
        "bridge-data": "bridge",
        "virtual-board-data": "bridge",
        "dashboard-data": "dashboard",
    }
    for volume, role in wanted.items():
        root = volumes / volume
        assert owner_and_mode(root)[:2] == (IMAGE_UID, IMAGE_UID), f"{volume} writable"
        handed = root / "credentials" / f"{role}.json"
        assert [p.name for p in handed.parent.iterdir()] == [handed.name], "only its own role"
        assert owner_and_mode(handed) == (IMAGE_UID, IMAGE_UID, 0o600)
        assert handed.read_text() == (broker / "credentials" / handed.name).read_text()


def start_locked_broker(
    procs: Procs, broker: dict[str, Any], volumes: Path, port: int, tls: int
) -> Proc:
    """Mosquitto with iotpipe/broker/docker.conf: its health check gets in with the reader's login
    that init wrote, over plain MQTT and over TLS trusting init's CA, and an anonymous
    client (the same check without it) does not."""
    assert broker["command"][:2] == ["mosquitto", "-c"]
    config = native_broker_config(broker, volumes, port, tls)
    mosquitto = procs.start("broker", [MOSQUITTO, "-c", str(config)])
    wait_until(lambda: port_open(port) and port_open(tls), 10, "mosquitto with docker.conf")
    health = [interpolate(str(p)) for p in broker["healthcheck"]["test"][1:]]
    probe = [health[0], "-p", str(port), *health[1:]]
    config_home = localise(broker["environment"]["XDG_CONFIG_HOME"], mounts(broker, volumes))
    env = {**os.environ, "XDG_CONFIG_HOME": config_home}
    logged_in = subprocess.run(probe, capture_output=True, text=True, env=env, timeout=10)
    assert logged_in.returncode == 0, logged_in.stderr
    ca = volumes / "broker-data" / "tls" / "ca.crt"
    secure = [health[0], "-h", "127.0.0.1", "-p", str(tls), "--cafile", str(ca), *health[1:]]
    over_tls = subprocess.run(secure, capture_output=True, text=True, env=env, timeout=10)
    assert over_tls.returncode == 0, over_tls.stderr
    # isolated_settings points XDG_CONFIG_HOME at an empty folder: no options file there.
    anonymous = subprocess.run(probe, capture_output=True, text=True, timeout=10)
    assert anonymous.returncode != 0 and "not authorised" in anonymous.stderr
    return mosquitto


def announce_a_wifi_board(
    procs: Procs, announcer: dict[str, Any], volumes: Path, mqtt_url: str, mosquitto: Proc
) -> None:
    """The announcer's command as compose runs it, on the broker's volume: a board given a
    login there (so on Wi-Fi) that publishes its meta is announced to Home Assistant, with
    the precision its meta states."""
    broker_data = volumes / "broker-data"
    swaps = {"mqtt://broker:1883": mqtt_url} | mounts(announcer, volumes)
    procs.iotpipe("announcer", *[localise(interpolate(a), swaps) for a in announcer["command"]])
    made = subprocess.run(
        [sys.executable, "-m", "iotpipe", "board", "login", "--device-id", "wifi-1",
         "--data", str(broker_data)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    mosquitto.popen.send_signal(signal.SIGHUP)  # docker.conf has no pid file to find it by
    board = json.loads((broker_data / "credentials" / "boards" / "wifi-1.json").read_text())
    meta = {
        "device": "wifi-1", "boot": "0a1b2c3d", "fw": "0.2.0", "board": "esp32",
        "sensors": ["dht22"], "units": {"temperature": "°C", "humidity": "%"},
        "decimals": {"temperature": 1, "humidity": 1}, "interval_ms": 5000, "ts": None,
    }  # fmt: skip
    port = int(mqtt_url.rsplit(":", 1)[1])

    def published() -> bool:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.username_pw_set(board["user"], board["password"])
        try:
            client.connect("127.0.0.1", port)
        except OSError:
            return False
        client.loop_start()
        sent = client.publish("iotpipe/wifi-1/meta", json.dumps(meta), qos=1, retain=True)
        sent.wait_for_publish(10)
        client.disconnect()
        client.loop_stop()
        return sent.is_published() and not sent.rc

    wait_until(published, 30, "the Wi-Fi board's meta, as the board (after the reload)")
    reader = json.loads((broker_data / "credentials" / "reader.json").read_text())
    topic = "homeassistant/sensor/wifi-1/temperature/config"
    configs = Subscriber(
        port, "homeassistant/sensor/wifi-1/+/config", (reader["user"], reader["password"])
    )
    try:
        wait_until(lambda: configs.on(topic), 60, "the announcer's discovery config of wifi-1")
        config = json.loads(configs.on(topic)[-1].payload)
    finally:
        configs.close()
    assert config["suggested_display_precision"] == 1
    assert config["availability"] == [{"topic": "iotpipe/wifi-1/status"}], "no bridge: its own"


@pytest.mark.skipif(os.geteuid() != 0, reason="init chowns to the containers' uids: needs root")
def test_the_compose_services_run_natively_into_an_authenticated_pipeline(
    procs: Procs, tmp_path: Path
) -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    volumes = tmp_path / "volumes"
    for volume in doc["volumes"]:  # as the engine makes them: empty, root's
        (volumes / volume).mkdir(parents=True)
    mqtt, mqtts, http, metrics = free_port(), free_port(), free_port(), free_port()
    addresses = {
        "mqtt://broker:1883": f"mqtt://127.0.0.1:{mqtt}",
        "0.0.0.0:8080": f"127.0.0.1:{http}",
        "127.0.0.1:9101": f"127.0.0.1:{metrics}",
        "/tmp/board.tty": str(tmp_path / "board.tty"),
    }

    run_init(services["init"], volumes)
    first = (volumes / "broker-data" / "credentials" / "bridge.json").read_text()
    run_init(services["init"], volumes)  # as every `docker compose up` does: same logins
    assert (volumes / "broker-data" / "credentials" / "bridge.json").read_text() == first
    assert_handed_out(volumes)

    mosquitto = start_locked_broker(procs, services["broker"], volumes, mqtt, mqtts)
    # From here on no login is given: with anonymous clients refused (above) and no IOTPIPE_…
    # variable set (isolated_settings), the services get in with what init handed out.
    board_service = services["virtual-board"]
    script = localise(
        interpolate(board_service["command"][0]), addresses | mounts(board_service, volumes)
    )
    board = procs.start("virtual-board", ["sh", "-c", script], env=with_venv_path())
    dashboard = services["dashboard"]
    swaps = addresses | mounts(dashboard, volumes)
    dashboard_argv = [localise(interpolate(a), swaps) for a in dashboard["command"]]
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
        announce_a_wifi_board(
            procs, services["announcer"], volumes, f"mqtt://127.0.0.1:{mqtt}", mosquitto
        )
    finally:
        # The script's background board is in the group the test started: stop it too.
        os.killpg(board.popen.pid, signal.SIGTERM)
