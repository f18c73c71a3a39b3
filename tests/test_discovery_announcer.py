"""The host-side announcer's decisions (iotpipe/commands/announcer.py), pure, then the real command
against the real Mosquitto: a Wi-Fi board announced from its retained meta, removed when
its login is revoked; a bridge's stale config tidied away."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from iotpipe.commands.announcer import Announcer
from iotpipe.mqttwire import discovery
from iotpipe.mqttwire.discovery import Board
from tests.conftest import Procs, Subscriber, start_broker, wait_until

BRIDGE = "iotpipe/bridge/pi-ttyUSB0/status"


def meta(device: str, units: dict[str, str], interval_ms: int = 60_000) -> bytes:
    body = {
        "device": device,
        "boot": "0a1b2c3d",
        "fw": "0.2.0",
        "board": "esp8266",
        "sensors": ["dht22"],
        "units": units,
        "interval_ms": interval_ms,
        "ts": 1.0,
    }
    return json.dumps(body).encode()


def topics_of(messages: list[Any], empty: bool) -> list[str]:
    return sorted(m.topic for m in messages if (not m.payload) == empty)


def test_a_wifi_board_is_announced_once_its_meta_and_login_are_known() -> None:
    a = Announcer("iotpipe", "homeassistant")
    assert a.meta("iotpipe/garden/meta", meta("garden", {"temperature": "°C"})) == []
    out = a.boards({"garden"})
    assert topics_of(out, empty=False) == [
        "homeassistant/button/garden/read_now/config",
        "homeassistant/sensor/garden/temperature/config",
    ]
    body = json.loads(next(m.payload for m in out if "sensor" in m.topic))
    assert body["availability"] == [{"topic": "iotpipe/garden/status"}]  # no bridge
    assert body["expire_after"] == 180 and all(m.retain for m in out)
    assert a.boards({"garden"}) == []  # nothing new: nothing published again
    assert topics_of(a.again(), empty=False) == topics_of(out, empty=False)


def test_a_board_without_a_login_of_its_own_is_left_to_its_bridge() -> None:
    a = Announcer("iotpipe", "homeassistant")
    a.boards(set())
    assert a.meta("iotpipe/kitchen/meta", meta("kitchen", {"temperature": "°C"})) == []


def test_a_revoked_board_is_removed_from_home_assistant() -> None:
    a = Announcer("iotpipe", "homeassistant")
    a.boards({"garden"})
    for m in a.meta("iotpipe/garden/meta", meta("garden", {"temperature": "°C"})):
        a.config(m.topic, m.payload)  # the broker sends our own configs back
    out = a.boards(set())
    assert topics_of(out, empty=True) == [
        "homeassistant/button/garden/read_now/config",
        "homeassistant/sensor/garden/temperature/config",
    ]


def test_a_metric_a_wifi_board_dropped_is_removed() -> None:
    a = Announcer("iotpipe", "homeassistant")
    a.boards({"garden"})
    a.meta("iotpipe/garden/meta", meta("garden", {"temperature": "°C", "battery": "V"}))
    out = a.meta("iotpipe/garden/meta", meta("garden", {"temperature": "°C"}))
    assert topics_of(out, empty=True) == ["homeassistant/sensor/garden/battery/config"]


def bridge_config(device: str, metric: str, unit: str) -> tuple[str, bytes]:
    board = Board(device, "0.2.0", "esp32", {metric: unit}, 5000)
    m = discovery.configs(board, "iotpipe", BRIDGE)[0]
    return m.topic, m.payload


def test_a_bridges_config_no_meta_backs_is_tidied_and_one_it_backs_is_kept() -> None:
    a = Announcer("iotpipe", "homeassistant")
    a.meta("iotpipe/kitchen/meta", meta("kitchen", {"temperature": "°C"}))
    assert a.config(*bridge_config("kitchen", "temperature", "°C")) == []
    out = a.config(*bridge_config("kitchen", "pressure", "hPa"))  # from an older hello
    assert topics_of(out, empty=True) == ["homeassistant/sensor/kitchen/pressure/config"]
    out = a.meta("iotpipe/kitchen/meta", b"")  # the board's meta cleared: it is gone
    assert topics_of(out, empty=True) == ["homeassistant/sensor/kitchen/temperature/config"]


def test_configs_of_other_software_or_another_base_are_never_touched() -> None:
    a = Announcer("iotpipe", "homeassistant")
    other = {"name": "t", "state_topic": "zigbee2mqtt/lamp", "device": {"identifiers": ["x"]}}
    assert a.config("homeassistant/sensor/lamp/t/config", json.dumps(other).encode()) == []
    assert a.config("homeassistant/sensor/x/y/config", b"not json") == []
    topic, payload = bridge_config("kitchen", "temperature", "°C")
    owner = discovery.config_owner
    assert owner("iotpipe", payload) == "kitchen" and owner("lab", payload) is None
    assert Announcer("lab", "homeassistant").config(topic, payload) == []


def test_a_config_from_release_1b120ab_is_recognised_as_iotpipes() -> None:
    # What bridge/discovery.py published at 1b120ab: no origin, object_id.
    old = {
        "name": "pressure",
        "unique_id": "iotpipe_kitchen_pressure",
        "object_id": "kitchen_pressure",
        "state_topic": "iotpipe/kitchen/telemetry",
        "value_template": "{{ value_json.metrics.pressure }}",
        "device": {
            "identifiers": ["iotpipe_kitchen"],
            "name": "kitchen",
            "manufacturer": "iotpipe",
        },
    }
    a = Announcer("iotpipe", "homeassistant")
    a.meta("iotpipe/kitchen/meta", meta("kitchen", {"temperature": "°C"}))
    out = a.config("homeassistant/sensor/kitchen/pressure/config", json.dumps(old).encode())
    assert topics_of(out, empty=True) == ["homeassistant/sensor/kitchen/pressure/config"]


def test_a_bad_meta_is_ignored_and_said(caplog: Any) -> None:
    a = Announcer("iotpipe", "homeassistant")
    a.boards({"garden"})
    assert a.meta("iotpipe/garden/meta", b"{nope") == []
    assert a.meta("iotpipe/garden/meta", meta("other", {"temperature": "°C"})) == []
    assert "ignored the meta on iotpipe/garden/meta" in caplog.text


def test_iotpipe_announce_follows_the_broker(procs: Procs, tmp_path: Path) -> None:
    """The real command, the real locked-down broker: a Wi-Fi board (its own login)
    publishes its meta; its configs appear; `iotpipe board revoke` makes them go."""
    data = tmp_path / "broker"
    broker = start_broker(procs, data)
    login = procs.iotpipe("login", "board", "login", "--device-id", "garden", "--data", str(data))
    wait_until(lambda: login.popen.poll() is not None, 30, "board login")
    board_login = json.loads((data / "credentials" / "boards" / "garden.json").read_text())
    garden = Subscriber(broker.port, "nothing/#", (board_login["user"], board_login["password"]))
    garden.client.publish("iotpipe/garden/meta", meta("garden", {"temperature": "°C"}), 1, True)
    watch = Subscriber(broker.port, "homeassistant/#", broker.credentials("reader"))
    try:
        procs.iotpipe("announce", "announce", "--broker", broker.url, "--data", str(data))
        config = "homeassistant/sensor/garden/temperature/config"
        wait_until(lambda: watch.on(config), 30, "the Wi-Fi board's discovery config")
        body = json.loads(watch.on(config)[-1].payload)
        assert body["availability"] == [{"topic": "iotpipe/garden/status"}]
        assert body["device_class"] == "temperature" and body["unique_id"] == (
            "iotpipe_garden_temperature"
        )
        revoke = procs.iotpipe(
            "revoke", "board", "revoke", "--device-id", "garden", "--data", str(data)
        )
        wait_until(lambda: revoke.popen.poll() is not None, 30, "board revoke")
        wait_until(lambda: watch.on(config)[-1].payload == b"", 30, "the config removed")
    finally:
        garden.close()
        watch.close()
