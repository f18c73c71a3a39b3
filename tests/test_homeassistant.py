"""A real Home Assistant (2025.4.4, from the package registry, cached under
/var/cache/iotpipe/homeassistant) on iotpipe's real locked-down broker, logged in with
`iotpipe login add … --role homeassistant`, asked through its REST API what it made of
each board: serial boards behind real bridges (one with a dotted device id), a board on
Wi-Fi running the real firmware (announced by `iotpipe announce`), and a scripted Wi-Fi
board for what the virtual one cannot measure (a battery in volts, the MCU's temperature:
no ADC here).

Where Home Assistant 2025.4 and its current documentation differ, the payloads follow the
documentation: ``default_entity_id`` (2025.10) is ignored by 2025.4, which names entities
from the device and entity names instead — the tests check that both give the same ids.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from iotpipe.mqttwire import discovery
from tests import homeassistant_support as ha
from tests.conftest import (
    Broker,
    Procs,
    Subscriber,
    free_port,
    start_bridge,
    start_broker,
    start_virtual_board,
    wait_until,
)

pytestmark = pytest.mark.homeassistant

READY_S = 240  # a first start on a loaded 2-core machine; usually 12-25 s


@dataclass
class World:
    broker: Broker
    api: ha.Api
    hass: subprocess.Popen[bytes]
    log: Path
    procs: Procs
    tmp: Path
    watch: Subscriber
    cellar: Subscriber  # the scripted Wi-Fi board, logged in as itself


def hass_log(world: World) -> str:
    return world.log.read_text(errors="replace") if world.log.exists() else ""


def start_hass(config: Path, api: ha.Api) -> tuple[subprocess.Popen[bytes], Path]:
    log = config / "hass.out"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [
                str(ha.installed()),
                "-c",
                str(config),
                "--skip-pip",
                "--log-file",
                str(config / "home-assistant.log"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            # Belt and braces beside --skip-pip: a pip that Home Assistant ran anyway would
            # find no index, and the integration needing it would fail the tests.
            env={**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""},
        )
    ha_log = config / "home-assistant.log"
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise AssertionError(f"hass exited {popen.returncode}:\n{log.read_text()[-3000:]}")
        text = ha_log.read_text(errors="replace") if ha_log.exists() else ""
        if "birth message sent" in text.lower() and api.answers():
            return popen, ha_log
        time.sleep(0.5)
    popen.send_signal(signal.SIGTERM)
    raise AssertionError(f"Home Assistant not ready in {READY_S}s:\n{log.read_text()[-3000:]}")


def stop_hass(popen: subprocess.Popen[bytes]) -> None:
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)  # by its PID, as every process here
        try:
            popen.wait(60)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(10)


def cellar_meta(units: dict[str, str]) -> bytes:
    return json.dumps(
        {
            "device": "cellar",
            "boot": "0a1b2c3d",
            "fw": "0.2.0",
            "board": "esp8266",
            "sensors": ["mcu", "battery"],
            "units": units,
            # Stated for the battery only: the MCU's temperature is as an older board's.
            "decimals": {"battery": 2} if "battery" in units else {},
            "interval_ms": 60000,
            "ts": time.time(),
        }
    ).encode()


def cellar_reading(seq: int, metrics: dict[str, float]) -> bytes:
    return json.dumps(
        {
            "device": "cellar",
            "boot": "0a1b2c3d",
            "seq": seq,
            "ts": time.time(),
            "uptime_ms": 1000 * seq,
            "metrics": metrics,
        }
    ).encode()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    try:
        ha.installed()
    except ha.Unavailable as exc:
        pytest.skip(str(exc))
    tmp = tmp_path_factory.mktemp("ha")
    procs = Procs(tmp)
    hass: subprocess.Popen[bytes] | None = None
    subs: list[Subscriber] = []
    try:
        broker = start_broker(procs, tmp / "broker")
        made = subprocess.run(
            [
                sys.executable,
                "-m",
                "iotpipe",
                "login",
                "add",
                "homeassistant",
                "--role",
                "homeassistant",
                "--data",
                str(broker.data),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
        creds = json.loads((broker.data / "credentials/logins/homeassistant.json").read_text())
        watch = Subscriber(broker.port, "#", broker.credentials("reader"))
        subs.append(watch)
        # Serial boards behind real bridges: one id Home Assistant takes as it is, one not.
        for device in ("kitchen", "kitchen.v2"):
            link = tmp / f"{device}.tty"
            start_virtual_board(procs, link, device, 1.0)
            start_bridge(
                procs, tmp, link, broker.url, name=f"bridge-{device}", env=broker.env_for("bridge")
            )
        # Boards on Wi-Fi: each with a login of its own, announced by `iotpipe announce`.
        for device in ("garden", "cellar"):
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "iotpipe",
                    "board",
                    "login",
                    "--device-id",
                    device,
                    "--data",
                    str(broker.data),
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
        garden = json.loads((broker.data / "credentials/boards/garden.json").read_text())
        procs.iotpipe(
            "garden",
            "board",
            "virtual",
            "--transport",
            "mqtt",
            "--broker",
            broker.url,
            "--rate",
            "1",
            "--device-id",
            "garden",
            env={"IOTPIPE_MQTT_USER": garden["user"], "IOTPIPE_MQTT_PASSWORD": garden["password"]},
        )
        cellar_login = json.loads((broker.data / "credentials/boards/cellar.json").read_text())
        cellar = Subscriber(
            broker.port, "iotpipe/cellar/cmd", (cellar_login["user"], cellar_login["password"])
        )
        subs.append(cellar)
        cellar.client.publish("iotpipe/cellar/status", b"online", 1, True)
        units = {"mcu_temperature": "°C", "battery": "V"}
        cellar.client.publish("iotpipe/cellar/meta", cellar_meta(units), 1, True)
        procs.iotpipe("announce", "announce", "--broker", broker.url, "--data", str(broker.data))

        http = free_port()
        config = tmp / "hass-config"
        ha.write_config(config, http, broker.port, creds["user"], creds["password"])
        api = ha.Api(http)
        hass, log = start_hass(config, api)
        api.log_in()
        yield World(broker, api, hass, log, procs, tmp, watch, cellar)
    finally:
        if hass is not None:
            stop_hass(hass)
        for sub in subs:
            sub.close()
        procs.stop_all()


def states(world: World) -> dict[str, dict[str, Any]]:
    return world.api.states()


def wait_for_state(world: World, entity: str, timeout: float = 120) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def present() -> bool:
        found.update(states(world).get(entity) or {})
        return bool(found) and found["state"] not in ("unknown", "unavailable")

    wait_until(present, timeout, f"{entity} with a value in Home Assistant")
    return found


def readings(world: World, device: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in world.watch.on(f"iotpipe/{device}/telemetry")]


def test_the_device_class_table_matches_this_home_assistant(world: World) -> None:
    python = ha.installed().parent / "python"
    code = (
        "import json; from homeassistant.components.sensor.const import "
        "DEVICE_CLASS_UNITS as U; print(json.dumps({str(k): sorted(str(u) for u in v "
        "if u is not None) for k, v in U.items()}))"
    )
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    allowed = json.loads(done.stdout)
    for name, units in discovery.UNITS.items():
        assert name in allowed, name
        assert units <= set(allowed[name]), (name, units - set(allowed[name]))


@pytest.mark.parametrize("device", ["kitchen", "kitchen.v2"])
def test_a_serial_boards_entities_have_the_right_class_unit_and_value(
    world: World, device: str
) -> None:
    slug = discovery.slug(device)
    for metric, kind, unit in (("temperature", "temperature", "°C"), ("humidity", "humidity", "%")):
        entity = f"sensor.{slug}_{metric}"
        state = wait_for_state(world, entity)
        # 2025.4 ignores default_entity_id (added in 2025.10) and names the entity from the
        # device and entity names: both must give the id the documentation's option asks.
        topic = discovery.config_topic("homeassistant", "sensor", device, metric)
        config = json.loads(world.watch.on(topic)[-1].payload)
        assert config["default_entity_id"] == entity and "object_id" not in config
        assert state["attributes"]["device_class"] == kind
        assert state["attributes"]["unit_of_measurement"] == unit
        assert state["attributes"]["state_class"] == "measurement"
        # The value is one the board produced (HA may be a reading behind the test).
        wait_until(
            lambda e=entity, m=metric: (
                float(states(world)[e]["state"])
                in {r["metrics"][m] for r in readings(world, device)}
            ),
            30,
            f"{entity} showing a value the board sent",
        )


def test_a_wifi_board_running_the_firmware_is_announced(world: World) -> None:
    state = wait_for_state(world, "sensor.garden_temperature")
    assert state["attributes"]["device_class"] == "temperature"
    wait_until(
        lambda: (
            float(states(world)["sensor.garden_temperature"]["state"])
            in {r["metrics"]["temperature"] for r in readings(world, "garden")}
        ),
        60,
        "the Wi-Fi board's temperature in Home Assistant",
    )


def test_a_battery_in_volts_is_a_voltage_and_the_mcu_a_temperature(world: World) -> None:
    world.cellar.client.publish(
        "iotpipe/cellar/telemetry", cellar_reading(0, {"mcu_temperature": 41.5, "battery": 3.91}), 1
    )
    battery = wait_for_state(world, "sensor.cellar_battery")
    assert battery["attributes"]["device_class"] == "voltage"
    assert battery["attributes"]["unit_of_measurement"] == "V"
    assert float(battery["state"]) == 3.91
    mcu = wait_for_state(world, "sensor.cellar_mcu_temperature")
    assert mcu["attributes"]["device_class"] == "temperature" and float(mcu["state"]) == 41.5

    # A reading without the battery (its read failed): the last value stays, no warning.
    world.cellar.client.publish(
        "iotpipe/cellar/telemetry", cellar_reading(1, {"mcu_temperature": 42.0}), 1
    )
    wait_until(
        lambda: states(world)["sensor.cellar_mcu_temperature"]["state"] == "42.0",
        60,
        "the second reading in Home Assistant",
    )
    assert states(world)["sensor.cellar_battery"]["state"] == "3.91"
    assert not re.search(r"(WARNING|ERROR).*(Template|value_json)", hass_log(world))


@pytest.mark.parametrize("device", ["kitchen", "garden"])  # behind a bridge; on Wi-Fi
def test_read_now_goes_through_the_boards_request_and_answer(world: World, device: str) -> None:
    wait_for_state(world, f"sensor.{device}_temperature")
    button = f"button.{device}_read_now"
    wait_until(lambda: button in states(world), 60, "the read-now button")
    before = len(world.watch.on(f"iotpipe/{device}/reply"))
    world.api.press(button)
    wait_until(
        lambda: len(world.watch.on(f"iotpipe/{device}/reply")) > before, 30, "the board's answer"
    )
    answer = json.loads(world.watch.on(f"iotpipe/{device}/reply")[-1].payload)
    assert answer["id"] == "homeassistant-read-now" and answer["ok"] is True
    seq = answer["result"]["seq"]
    wait_until(
        lambda: any(r["seq"] == seq for r in readings(world, device)),
        30,
        "the reading the board took on the press",
    )
    taken = next(r for r in readings(world, device) if r["seq"] == seq)
    assert taken["metrics"]["temperature"] == answer["result"]["metrics"]["temperature"]


def precision(world: World, entity: str) -> int | None:
    """Home Assistant's suggested display precision of an entity: its registry options."""
    options = world.api.registry_entry(entity).get("options", {})
    value = options.get("sensor", {}).get("suggested_display_precision")
    return int(value) if value is not None else None


@pytest.mark.parametrize(
    ("device", "metric", "decimals"),
    [
        ("kitchen", "temperature", 2),  # firmware/sensor_sim.py, through a bridge
        ("kitchen", "humidity", 1),
        ("garden", "temperature", 2),  # the same firmware on Wi-Fi, through the announcer
        ("cellar", "battery", 2),  # stated in its meta
        ("cellar", "mcu_temperature", None),  # not stated, as by an older board
    ],
)
def test_the_display_precision_is_the_decimals_the_board_states(
    world: World, device: str, metric: str, decimals: int | None
) -> None:
    entity = f"sensor.{discovery.slug(device)}_{metric}"
    topic = discovery.config_topic("homeassistant", "sensor", device, metric)
    wait_until(lambda: world.watch.on(topic), 60, f"the discovery config of {entity}")
    config = json.loads(world.watch.on(topic)[-1].payload)
    assert config.get("suggested_display_precision") == decimals
    wait_until(lambda: entity in states(world), 120, f"{entity} in Home Assistant")
    wait_until(
        lambda: precision(world, entity) == decimals,
        60,
        f"{entity}'s display precision {decimals} in Home Assistant's entity registry",
    )


def test_a_metric_the_board_no_longer_has_disappears(world: World) -> None:
    wait_for_state(world, "sensor.cellar_battery")
    world.cellar.client.publish(
        "iotpipe/cellar/meta", cellar_meta({"mcu_temperature": "°C"}), 1, True
    )
    wait_until(
        lambda: "sensor.cellar_battery" not in states(world), 60, "the battery entity removed"
    )
    assert "sensor.cellar_mcu_temperature" in states(world)


def test_entities_become_unavailable_when_the_board_goes_offline(world: World) -> None:
    wait_for_state(world, "sensor.kitchen_v2_humidity")
    bridge = next(p for p in world.procs.started if p.name == "bridge-kitchen.v2")
    bridge.stop()  # its will and its goodbye: the board's status goes offline
    for entity in (
        "sensor.kitchen_v2_humidity",
        "sensor.kitchen_v2_temperature",
        "button.kitchen_v2_read_now",
    ):
        wait_until(
            lambda e=entity: states(world)[e]["state"] == "unavailable", 60, f"{entity} unavailable"
        )
    assert states(world)["sensor.kitchen_temperature"]["state"] != "unavailable"
    world.cellar.client.publish("iotpipe/cellar/status", b"offline", 1, True)
    wait_until(
        lambda: states(world)["sensor.cellar_mcu_temperature"]["state"] == "unavailable",
        60,
        "the Wi-Fi board's entity unavailable",
    )


def test_no_discovery_warning_in_home_assistants_log(world: World) -> None:
    """Last: by now every board, reading, removal and status change has been through."""
    assert "sensor.kitchen_v2_temperature" in states(world)
    # What Home Assistant says about a config or a payload it dislikes: an illegal discovery
    # topic, a unit its device class refuses, a template that failed on a reading.
    said = re.compile(
        r" (WARNING|ERROR) \(\w+\) \[homeassistant\.(components\.(mqtt|sensor|"
        r"button)|helpers\.template)"
    )
    complaints = [line for line in hass_log(world).splitlines() if said.search(line)]
    assert complaints == []
