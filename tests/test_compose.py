"""docker-compose.yml brought up for real, as docs/deploy.md's docker section tells a user.

The tier (`pytest -m compose`) starts a Docker Engine of its own (tests/compose_support.py:
stand-in base images, as no image registry is reachable, cached in /var/cache/iotpipe/compose),
runs STEPS — the very commands of docs/deploy.md's docker section, held to it by the first
test — and checks what a user checks after each. Only the published ports differ from a
user's: free loopback ports in HTTP_PUBLISH, MQTT_PUBLISH and MQTTS_PUBLISH (.env.example),
so the tier runs beside anything else on the machine. At the end the stack goes with its
volumes and the image it built, and the daemon with the bridge and the iptables rules it made.
"""

from __future__ import annotations

import csv
import grp
import io
import json
import re
import shlex
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.compose_support import (
    ROOT,
    Engine,
    EngineUnavailable,
    SerialBoard,
    engine_problem,
    ensure_base_images,
    running_engine,
)
from tests.conftest import Subscriber, free_port, wait_until

pytestmark = pytest.mark.compose

DEVICE = "virtual-1"  # docker-compose.yml's virtual board
METRICS = ("humidity", "temperature")  # what the firmware's simulated sensor reads
UP_S = 600  # bring-up, on a cold 2-core machine under load
PROFILES = ("--profile", "virtual-board", "--profile", "serial")  # every service, for down

# docs/deploy.md, "docker compose", in the order the tests run them.
BUILD = "DOCKER_BUILDKIT=0 docker compose build"
UP = "docker compose --profile virtual-board up -d --wait"
SUB = "docker compose exec -T broker mosquitto_sub -t 'iotpipe/+/telemetry' -C 3 -v"
RESTART = "docker compose restart broker"
GET_CA = "docker compose cp broker:/mosquitto/data/tls/ca.crt ca.crt"
SERIAL_UP = "docker compose --profile serial up -d --wait"
DOWN = "docker compose --profile virtual-board down"
DOWN_ALL = "docker compose --profile virtual-board down -v"
RM_IMAGE = "docker image rm iotpipe:latest"
# docs/deploy.md, "A board on Wi-Fi": its login in the broker's volume, and the broker told.
WIFI = "wifi-1"
BOARD_LOGIN = (
    "docker compose run --rm init 'iotpipe board login --device-id {device} "
    "--data /mosquitto/data && chown -R 1883:1883 /mosquitto/data'"
)
RELOAD = "docker compose kill -s HUP broker"
STEPS = (BUILD, UP, SUB, RESTART, GET_CA, DOWN, UP, DOWN_ALL, RM_IMAGE, SERIAL_UP)
WIFI_STEPS = (BOARD_LOGIN.format(device="garden"), RELOAD)  # its own part of the section
# The serial board is a pty on the host: its major (136) added to the bridge's cgroup rules.
WITH_PTY = ("-f", "docker-compose.yml", "-f", "tests/compose/pty.yml")
SERIAL = (*WITH_PTY, "--profile", "serial")

# Reads the dashboard's history as a user with a shell in its container could: every
# reading's key and time, from the store's own file, read-only.
HISTORY_SQL = """
import json, sqlite3
db = sqlite3.connect("file:/data/history.sqlite3?mode=ro", uri=True)
rows = db.execute("SELECT boot, seq, ts FROM readings WHERE device = ? ORDER BY ts", ("{device}",))
print(json.dumps(rows.fetchall()))
"""


@dataclass
class Stack:
    engine: Engine
    env: dict[str, str]
    http: int
    mqtt: int
    mqtts: int
    built: str  # what `docker compose build` printed (both streams)

    def run(
        self, line: str, *extra: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """One command line as the docs write it (`VAR=value` words first), plus extra args."""
        words = shlex.split(line)
        env = dict(self.env)
        while "=" in words[0]:
            name, value = words.pop(0).split("=", 1)
            env[name] = value
        done = subprocess.run(
            [*words, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(f"`{line}` failed ({done.returncode}): {done.stderr[-2000:]}")
        return done

    def compose(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.run("docker compose", *args, timeout=timeout, check=check)

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=10) as r:
            body: bytes = r.read()
            return body

    def json(self, path: str) -> Any:
        return json.loads(self.get(path))

    def history(self, device: str = DEVICE) -> list[tuple[str, int, float]]:
        """(boot, seq, ts) of every reading of a board in the dashboard's store."""
        script = HISTORY_SQL.replace("{device}", device)
        done = self.compose("exec", "-T", "dashboard", "python", "-c", script, timeout=60)
        return [(b, int(s), float(t)) for b, s, t in json.loads(done.stdout)]

    def exported(self, device: str = DEVICE) -> dict[float, dict[str, float]]:
        """The dashboard's CSV export of a board: values by time, metric."""
        found: dict[float, dict[str, float]] = {}
        for metric in METRICS:
            text = self.get(f"/api/devices/{device}/export.csv?metric={metric}").decode()
            for row in csv.DictReader(io.StringIO(text)):
                found.setdefault(round(float(row["ts"]), 3), {})[metric] = float(row["value"])
        return found

    def status(self) -> dict[str, dict[str, Any]]:
        done = self.compose(*PROFILES[:2], "ps", "-a", "--format", "json", timeout=60)
        rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        return {row["Service"]: row for row in rows}

    def bring_up(self) -> None:
        self.run(UP, timeout=UP_S)


def _teardown(stack: Stack) -> None:
    """Everything the test made in the engine, the docs' last steps first; the cached base
    images stay."""
    stack.run(DOWN_ALL, timeout=300, check=False)
    stack.compose(*PROFILES, "down", "-v", "--remove-orphans", timeout=300)
    stack.run(RM_IMAGE, check=False)
    for kind in ("container", "image", "volume", "network"):  # the build stage, leftovers
        stack.engine.docker(kind, "prune", "-f", check=False)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    problem = engine_problem()
    if problem:
        pytest.skip(f"no container engine can run here: {problem}")
    try:
        with running_engine() as engine:
            ensure_base_images(engine)
            http, mqtt_port, mqtts = free_port(), free_port(), free_port()
            env = engine.env | {
                "HTTP_PUBLISH": f"127.0.0.1:{http}",
                "MQTT_PUBLISH": f"127.0.0.1:{mqtt_port}",
                "MQTTS_PUBLISH": f"127.0.0.1:{mqtts}",
            }
            for name in ("COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME", "COMPOSE_FILE"):
                env.pop(name, None)  # the docs' commands, not the caller's defaults
            stack = Stack(engine, env, http, mqtt_port, mqtts, "")
            try:
                _teardown(stack)  # what a run killed before its teardown left
                built = stack.run(BUILD, timeout=1800)
                stack.built = built.stdout + built.stderr
                stack.bring_up()
                yield stack
            finally:
                _teardown(stack)
    except EngineUnavailable as exc:
        pytest.skip(f"no container engine can run here: {exc}")


def test_the_docs_docker_section_is_what_this_tier_runs() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    section = text[text.index("## docker compose") :]
    section = section[: section.index("\n## ", 1)]
    at = 0
    for step in STEPS:
        found = section.find(step, at)
        assert found >= 0, f"docs/deploy.md's docker section lacks, after its step {at}: {step}"
        at = found + len(step)
    at = section.index("### A board on Wi-Fi")
    for step in WIFI_STEPS:
        found = section.find(step, at)
        assert found >= 0, f"docs/deploy.md's Wi-Fi board steps lack, in this order: {step}"
        at = found + len(step)


def test_the_virtual_board_profile_becomes_healthy_as_a_whole(stack: Stack) -> None:
    services = stack.status()
    running = ("broker", "dashboard", "virtual-board", "announcer")
    assert {s: services[s]["Health"] for s in running} == {
        "broker": "healthy",
        "dashboard": "healthy",
        "virtual-board": "healthy",
        "announcer": "healthy",
    }
    assert "bridge" not in services, "the serial bridge waits for --profile serial"
    init = services["init"]
    assert (init["State"], init["ExitCode"], init["Health"]) == ("exited", 0, "")
    health = stack.engine.docker("inspect", "--format", "{{json .State.Health}}", init["Name"])
    assert health.stdout.strip() == "null", "a finished one-shot has no health to show"


def test_one_service_builds_the_image_the_others_run(stack: Stack) -> None:
    built = set(re.findall(r"Service (\S+)\s+Built", stack.built))
    assert built == {"init"}, stack.built[-2000:]
    image = stack.engine.docker("image", "inspect", "--format", "{{.Id}}", "iotpipe:latest")
    for name, row in stack.status().items():
        if row["Image"].startswith("iotpipe"):
            used = stack.engine.docker("inspect", "--format", "{{.Image}}", row["Name"])
            assert used.stdout == image.stdout, name


def test_mosquitto_gets_only_its_own_files_and_starts_without_errors(stack: Stack) -> None:
    listing = stack.compose("exec", "-T", "broker", "ls", "/mosquitto/config/").stdout.split()
    assert set(listing) <= {"docker.conf", "conf.d", "mosquitto.conf"}, listing
    done = stack.compose("logs", "--no-color", "broker")
    logs = done.stdout + done.stderr
    assert "mosquitto version" in logs and "running" in logs
    assert not re.search(r"(?i)read-only file system|chown", logs), logs[-2000:]


def _telemetry(lines: str) -> list[dict[str, Any]]:
    """mosquitto_sub -v output: `topic payload` per line."""
    found = []
    for line in lines.splitlines():
        topic, payload = line.split(" ", 1)
        assert topic == f"iotpipe/{DEVICE}/telemetry", topic
        found.append(json.loads(payload))
    return found


def test_mosquitto_sub_in_the_broker_sees_telemetry_only_with_a_login(stack: Stack) -> None:
    readings = _telemetry(stack.run(SUB, "-W", "120", timeout=180).stdout)
    assert len(readings) == 3
    seqs = [r["seq"] for r in readings]
    assert seqs == list(range(seqs[0], seqs[0] + 3)), "one board's readings, in order"
    assert all(set(r["metrics"]) == set(METRICS) for r in readings)
    # The same without the reader's options file: the broker must refuse it.
    anonymous = stack.compose(
        "exec", "-T", "-e", "XDG_CONFIG_HOME=/nonexistent", "broker",
        "mosquitto_sub", "-t", "iotpipe/+/telemetry", "-C", "1", "-W", "30",
        timeout=90, check=False,
    )  # fmt: skip
    assert anonymous.returncode != 0 and not anonymous.stdout
    assert "not authorised" in anonymous.stderr, anonymous.stderr
    # What the reader saw is what the dashboard kept, value by value.
    wait_until(
        lambda: all(round(r["ts"], 3) in stack.exported() for r in readings), 60, "the export"
    )
    exported = stack.exported()
    for reading in readings:
        assert exported[round(reading["ts"], 3)] == reading["metrics"], reading


def test_the_dashboard_shows_the_virtual_boards_readings(stack: Stack) -> None:
    health = stack.json("/healthz")
    assert health["ok"] is True and health["mqtt_connected"] is True
    (device,) = stack.json("/api/devices")
    assert device["id"] == DEVICE and device["status"] == "online"
    assert set(device["last"]["metrics"]) == set(METRICS)
    figure = stack.json(f"/api/charts/temperature?devices={DEVICE}")
    (trace,) = [t for t in figure["data"] if t.get("name") == DEVICE]
    values = [v for v in trace["y"] if v is not None]
    assert values and all(isinstance(v, float | int) for v in values)
    exported = stack.exported()
    assert max(values) <= max(v["temperature"] for v in exported.values()) + 1e-6
    assert min(values) >= min(v["temperature"] for v in exported.values()) - 1e-6


def _contiguous_with_values(stack: Stack, boot: str, device: str = DEVICE) -> list[int]:
    """The seqs of one boot in the history, checked to be 0..N without a hole, each one
    with every metric's value in the export; returns them."""
    rows = [(s, t) for b, s, t in stack.history(device) if b == boot]
    seqs = sorted(s for s, _t in rows)
    holes = sorted(set(range(seqs[-1] + 1)) - set(seqs)) if seqs else []
    assert seqs and seqs == list(range(len(seqs))), f"boot {boot} lacks seqs {holes[:20]}"
    exported = stack.exported(device)
    for seq, ts in rows:
        values = exported.get(round(ts, 3), {})
        assert set(values) == set(METRICS), f"seq {seq} lacks values: {values}"
    return seqs


def test_the_first_start_and_a_broker_restart_lose_no_reading(stack: Stack) -> None:
    """From seq 0 on (the board starts after the dashboard is subscribed), and across
    `docker compose restart broker` (the bridge spools, the dashboard's session waits)."""
    boots = {b for b, _s, _t in stack.history()}
    assert len(boots) == 1, boots
    (boot,) = boots
    before = max(s for _b, s, _t in stack.history())
    stack.run(RESTART, timeout=300)
    wait_until(
        lambda: max(s for b, s, _t in stack.history() if b == boot) >= before + 20,
        300,
        "20 readings more after the broker's restart",
    )
    stack.run(UP, timeout=UP_S)  # healthy again as a whole
    seqs = _contiguous_with_values(stack, boot)
    assert seqs[0] == 0 and seqs[-1] >= before + 20


def _reader_login(stack: Stack) -> dict[str, str]:
    done = stack.compose("exec", "-T", "broker", "cat", "/mosquitto/data/credentials/reader.json")
    login: dict[str, str] = json.loads(done.stdout)
    return login


def _one_reading_over_tls(stack: Stack, ca: Path, login: dict[str, str]) -> dict[str, Any]:
    got: list[bytes] = []
    arrived = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(login["user"], login["password"])
    client.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
    client.on_connect = lambda c, *_: c.subscribe(f"iotpipe/{DEVICE}/telemetry", 1)

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        got.append(bytes(msg.payload))
        arrived.set()

    client.on_message = on_message
    client.connect("127.0.0.1", stack.mqtts, keepalive=30)
    client.loop_start()
    try:
        assert arrived.wait(120), "no reading over mqtts within 120 s"
    finally:
        client.disconnect()
        client.loop_stop()
    reading: dict[str, Any] = json.loads(got[0])
    return reading


def test_the_mqtts_port_answers_with_the_generated_ca(stack: Stack, tmp_path: Path) -> None:
    stack.run(GET_CA)  # into the working directory, as the docs do it
    ca = ROOT / "ca.crt"
    try:
        (tmp_path / "ca.crt").write_bytes(ca.read_bytes())
    finally:
        ca.unlink()
    ca = tmp_path / "ca.crt"
    assert ca.read_text().startswith("-----BEGIN CERTIFICATE-----")
    with pytest.raises(ssl.SSLCertVerificationError):  # not a certificate anyone else trusts
        ssl.create_default_context().wrap_socket(
            socket.create_connection(("127.0.0.1", stack.mqtts), timeout=10),
            server_hostname="127.0.0.1",
        )
    reading = _one_reading_over_tls(stack, ca, _reader_login(stack))
    assert reading["device"] == DEVICE and set(reading["metrics"]) == set(METRICS)


def _publish_as(stack: Stack, login: dict[str, str], topic: str, payload: bytes) -> bool:
    """Published and acknowledged (QoS 1), retained; False while the login is refused."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(login["user"], login["password"])
    connected = threading.Event()
    client.on_connect = lambda c, u, flags, reason, props: reason.is_failure or connected.set()
    client.connect("127.0.0.1", stack.mqtt, keepalive=30)
    client.loop_start()
    try:
        if not connected.wait(10):
            return False
        sent = client.publish(topic, payload, qos=1, retain=True)
        sent.wait_for_publish(10)
        return sent.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_wifi_board_is_announced_to_home_assistant_with_its_precision(stack: Stack) -> None:
    """A board given a login in the broker's volume, as docs/deploy.md says, publishes its
    meta (as the firmware on Wi-Fi does): the announcer service makes its discovery configs,
    with the decimals the meta states as suggested_display_precision."""
    # -T: no terminal here to give the one-shot (a person's shell has one).
    stack.run(BOARD_LOGIN.format(device=WIFI).replace("run --rm", "run --rm -T"), timeout=300)
    stack.run(RELOAD, timeout=60)
    done = stack.compose(
        "exec", "-T", "broker", "cat", f"/mosquitto/data/credentials/boards/{WIFI}.json"
    )
    board: dict[str, str] = json.loads(done.stdout)
    meta = {
        "device": WIFI, "boot": "0a1b2c3d", "fw": "0.2.0", "board": "esp32",
        "sensors": ["dht22"], "units": {"temperature": "°C", "humidity": "%"},
        "decimals": {"temperature": 1, "humidity": 1}, "interval_ms": 5000, "ts": None,
    }  # fmt: skip
    wait_until(
        lambda: _publish_as(stack, board, f"iotpipe/{WIFI}/meta", json.dumps(meta).encode()),
        60,
        "the Wi-Fi board's meta, published with its own login",
    )
    reader = _reader_login(stack)
    topic = f"homeassistant/sensor/{WIFI}/temperature/config"
    login = (reader["user"], reader["password"])
    configs = Subscriber(stack.mqtt, f"homeassistant/sensor/{WIFI}/+/config", login)
    try:
        wait_until(lambda: configs.on(topic), 120, "the announcer's discovery config of the board")
        config = json.loads(configs.on(topic)[-1].payload)
    finally:
        configs.close()
    assert config["suggested_display_precision"] == 1
    assert config["availability"] == [{"topic": f"iotpipe/{WIFI}/status"}], "its own will"


def _boots(stack: Stack, device: str, at_least: int) -> dict[str, int]:
    """Readings per boot of a board in the history, boots with fewer than at_least left out."""
    counts: dict[str, int] = {}
    for boot, _seq, _ts in stack.history(device):
        counts[boot] = counts.get(boot, 0) + 1
    return {b: n for b, n in counts.items() if n >= at_least}


def test_a_serial_board_reaches_the_bridge_also_after_unplug_and_replug(
    stack: Stack, tmp_path: Path
) -> None:
    """The board on the host's /dev/serial/by-id link, IOTPIPE_SERIAL set to it as the docs
    say, the `serial` profile's bridge started; then the board unplugged and plugged back
    while everything runs: the same bridge container reads its new boot, nothing restarted."""
    device = "serial-1"
    board = SerialBoard(device, tmp_path / "board.log")
    serial = stack.env | {"IOTPIPE_SERIAL": str(board.link)}
    serial["DIALOUT_GID"] = str(grp.getgrnam("dialout").gr_gid)
    compose = Stack(stack.engine, serial, stack.http, stack.mqtt, stack.mqtts, "")
    try:
        board.plug()
        compose.run(SERIAL_UP.replace("docker compose", "docker compose " + " ".join(WITH_PTY)),
                    timeout=UP_S)  # fmt: skip
        wait_until(lambda: _boots(stack, device, 5), 180, "readings of the serial board")
        (first,) = _boots(stack, device, 1)
        started = compose.compose(*SERIAL, "ps", "--format", "{{.ID}} {{.Status}}", "bridge")
        board.unplug()

        def bridge_log() -> str:
            done = compose.compose(*SERIAL, "logs", "--no-color", "bridge")
            return done.stdout + done.stderr

        offline = f"device_offline device={device}"
        wait_until(lambda: offline in bridge_log(), 120, "the bridge to notice the unplug")
        board.plug()
        wait_until(
            lambda: set(_boots(stack, device, 5)) - {first}, 180, "readings after the replug"
        )
        for boot in _boots(stack, device, 1):  # both boots whole, from seq 0 on
            _contiguous_with_values(stack, boot, device)
        again = compose.compose(*SERIAL, "ps", "--format", "{{.ID}} {{.Status}}", "bridge")
        assert again.stdout.split()[0] == started.stdout.split()[0], "the same container"
        restarts = stack.engine.docker(
            "inspect", "--format", "{{.RestartCount}}", again.stdout.split()[0]
        )
        assert restarts.stdout.strip() == "0"
    finally:
        board.close()
        compose.compose(*SERIAL, "rm", "-sf", "bridge", check=False)


def test_down_then_up_keeps_the_history_and_the_logins(stack: Stack) -> None:
    logins = {
        name: stack.compose(
            "exec", "-T", "broker", "cat", f"/mosquitto/data/credentials/{name}.json"
        ).stdout
        for name in ("reader", "bridge", "dashboard")
    }
    kept = set(stack.history())
    stack.run(DOWN, timeout=300)
    assert not [r for r in stack.status().values() if r["State"] == "running"]
    started = time.time()
    stack.bring_up()
    for name, login in logins.items():
        again = stack.compose(
            "exec", "-T", "broker", "cat", f"/mosquitto/data/credentials/{name}.json"
        )
        assert again.stdout == login, f"{name}'s login changed across down/up"
    wait_until(
        lambda: any(t > started for _b, _s, t in stack.history()), 120, "new readings after up"
    )
    history = set(stack.history())
    assert kept <= history, f"{len(kept - history)} readings gone after down/up"
    new_boots = {b for b, _s, t in history if t > started}
    for boot in new_boots:  # the board's new boot, from its seq 0 on
        _contiguous_with_values(stack, boot)
