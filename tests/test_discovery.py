"""Home Assistant discovery payloads (iotpipe/mqttwire/discovery.py): pure, checked field by field
against Home Assistant's MQTT documentation. tests/test_homeassistant.py shows a real
Home Assistant taking them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from iotpipe import wire
from iotpipe.mqttwire import discovery
from iotpipe.mqttwire.discovery import Board

BRIDGE = "iotpipe/bridge/pi-ttyUSB0/status"


def board(units: dict[str, str], device: str = "kitchen", **kw: Any) -> Board:
    return Board(device, "0.2.0", "esp32", units, kw.pop("interval_ms", 5000), **kw)


def bodies(b: Board, bridge: str | None = BRIDGE, **kw: Any) -> dict[str, dict[str, Any]]:
    return {
        m.topic: json.loads(m.payload) if m.payload else {}
        for m in discovery.configs(b, "iotpipe", bridge, **kw)
    }


@pytest.mark.parametrize(
    ("metric", "unit", "expected"),
    [
        ("temperature", "°C", "temperature"),
        ("mcu_temperature", "°C", "temperature"),  # the last word of the name says it
        ("soil_moisture", "%", "moisture"),
        ("humidity", "%", "humidity"),
        ("battery", "%", "battery"),
        ("battery", "V", "voltage"),  # Home Assistant allows only % for battery
        ("pressure", "hPa", "atmospheric_pressure"),
        ("co2", "ppm", "carbon_dioxide"),
        ("supply", "mV", "voltage"),  # no telling name: the unit alone
        ("probe", "°F", "temperature"),
        ("level", "%", None),  # % alone could be anything
        ("humidity", "g/m³", None),  # a unit Home Assistant refuses for humidity
        ("broken", "", None),
    ],
)
def test_device_class_comes_from_the_name_and_must_fit_the_unit(
    metric: str, unit: str, expected: str | None
) -> None:
    assert discovery.device_class(metric, unit) == expected
    body = bodies(board({metric: unit}))[f"homeassistant/sensor/kitchen/{metric}/config"]
    assert body.get("device_class") == expected
    if expected is not None:
        assert unit in discovery.UNITS[expected]


def test_a_sensor_config_follows_the_current_documentation() -> None:
    b = board({"temperature": "°C", "humidity": "%"}, decimals={"temperature": 2})
    body = bodies(b)["homeassistant/sensor/kitchen/temperature/config"]
    assert "object_id" not in body  # deprecated in 2025.10, ignored from 2026.4
    assert body["default_entity_id"] == "sensor.kitchen_temperature"
    assert body["unique_id"] == "iotpipe_kitchen_temperature"  # as before: history kept
    assert body["origin"] == {"name": "iotpipe", "sw_version": discovery.__version__}
    assert body["state_topic"] == "iotpipe/kitchen/telemetry"
    assert body["unit_of_measurement"] == "°C" and body["state_class"] == "measurement"
    assert body["suggested_display_precision"] == 2
    assert body["expire_after"] == 60  # three 5 s intervals, but at least a minute
    assert body["availability"] == [{"topic": BRIDGE}, {"topic": "iotpipe/kitchen/status"}]
    assert body["availability_mode"] == "all"
    assert body["device"]["identifiers"] == ["iotpipe_kitchen"]
    humidity = bodies(b)["homeassistant/sensor/kitchen/humidity/config"]
    assert "suggested_display_precision" not in humidity  # the board did not say


def test_the_display_precision_is_the_decimals_the_boards_hello_states() -> None:
    line = (
        b'{"type":"hello","device":"kitchen","boot":"0a1b2c3d","uptime_ms":1,"fw":"0.2.0",'
        b'"board":"esp32","sensors":["dht22","mcu"],"units":{"temperature":"\xc2\xb0C",'
        b'"battery":"V"},"decimals":{"temperature":1,"battery":2},"interval_ms":5000}'
    )
    hello = wire.parse_line(line)
    assert isinstance(hello, wire.Hello)
    found = {
        m.topic: json.loads(m.payload).get("suggested_display_precision")
        for m in discovery.configs(hello, "iotpipe", BRIDGE)
    }
    assert found["homeassistant/sensor/kitchen/temperature/config"] == 1
    assert found["homeassistant/sensor/kitchen/battery/config"] == 2
    older = wire.parse_line(line.replace(b',"decimals":{"temperature":1,"battery":2}', b""))
    assert isinstance(older, wire.Hello) and older.decimals == {}
    for message in discovery.configs(older, "iotpipe", BRIDGE):
        assert b"suggested_display_precision" not in message.payload


def test_expire_after_is_three_intervals_of_a_slow_board() -> None:
    body = bodies(board({"temperature": "°C"}, interval_ms=600_000))
    assert body["homeassistant/sensor/kitchen/temperature/config"]["expire_after"] == 1800


def test_a_board_without_a_bridge_is_available_by_its_own_status() -> None:
    body = bodies(board({"temperature": "°C"}), bridge=None)
    config = body["homeassistant/sensor/kitchen/temperature/config"]
    assert config["availability"] == [{"topic": "iotpipe/kitchen/status"}]


def render(template: str, payload: dict[str, Any]) -> str:
    """The value template as Home Assistant renders it (Jinja2, value_json bound)."""
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)  # undefined raises here
    return str(env.from_string(template).render(value_json=payload))


def test_the_value_template_gives_empty_for_a_reading_without_the_metric() -> None:
    body = bodies(board({"temperature": "°C", "humidity": "%"}))
    template = body["homeassistant/sensor/kitchen/humidity/config"]["value_template"]
    both = {"metrics": {"temperature": 21.5, "humidity": 40.25}}
    assert render(template, both) == "40.25"
    # Home Assistant ignores "" for a numeric sensor: no warning, the last value stays.
    assert render(template, {"metrics": {"temperature": 21.5}}) == ""
    assert render(template, {"device": "kitchen"}) == ""


def test_read_now_is_a_button_that_sends_the_boards_read_command() -> None:
    body = bodies(board({"temperature": "°C"}))["homeassistant/button/kitchen/read_now/config"]
    assert body["command_topic"] == "iotpipe/kitchen/cmd"
    request = json.loads(body["payload_press"])
    assert request["cmd"] == "read" and wire.COMMAND_ID_RE.fullmatch(request["id"])
    assert body["default_entity_id"] == "button.kitchen_read_now"
    assert body["availability"][-1] == {"topic": "iotpipe/kitchen/status"}


@pytest.mark.parametrize("device", ["kitchen.v2", "a.b.c", "Kitchen-2_x"])
def test_every_device_id_gets_a_node_id_home_assistant_accepts(device: str) -> None:
    assert wire.DEVICE_ID_RE.fullmatch(device)
    node = discovery.node_id(device)
    assert discovery.NODE_ID_RE.fullmatch(node)
    for topic in bodies(board({"temperature": "°C"}, device=device)):
        assert topic.split("/")[2] == node
    slugged = bodies(board({"temperature": "°C"}, device=device))
    entity = slugged[f"homeassistant/sensor/{node}/temperature/config"]["default_entity_id"]
    assert entity == f"sensor.{discovery.slug(device)}_temperature"
    assert "__" not in entity and entity == entity.lower()


def test_ids_that_differ_only_in_a_dot_get_different_nodes() -> None:
    assert discovery.node_id("kitchen") == "kitchen"  # unchanged: old configs keep topics
    assert discovery.node_id("kitchen.v2") != discovery.node_id("kitchen-v2")
    assert discovery.node_id("kitchen.v2") != "kitchen_v2"
    assert discovery.node_id("kitchen.v2").startswith("kitchen_v2_")


def test_a_metric_the_board_no_longer_has_is_removed_with_an_empty_retained_config() -> None:
    old = board({"temperature": "°C", "humidity": "%"})
    new = board({"temperature": "°C"})
    messages = discovery.configs(new, "iotpipe", BRIDGE, before=old)
    gone = [m for m in messages if not m.payload]
    assert [(m.topic, m.retain) for m in gone] == [
        ("homeassistant/sensor/kitchen/humidity/config", True)
    ]
    assert all(m.retain for m in messages)


def test_meta_from_the_broker_is_checked_before_it_is_announced() -> None:
    meta = {
        "device": "garden",
        "boot": "0a1b2c3d",
        "fw": "0.2.0",
        "board": "esp8266",
        "sensors": ["dht22"],
        "units": {"temperature": "°C"},
        "interval_ms": 60000,
        "ts": 1.0,
        "decimals": {"temperature": 1},
    }
    b = discovery.board_from_meta(json.dumps(meta).encode())
    assert b == Board(
        "garden", "0.2.0", "esp8266", {"temperature": "°C"}, 60000, {"temperature": 1}
    )
    older = {k: v for k, v in meta.items() if k != "decimals"}  # firmware that does not say
    assert discovery.board_from_meta(json.dumps(older).encode()).decimals == {}
    for bad, says in [
        (b"{", "not JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps({**meta, "device": "a/b"}).encode(), "device"),
        (json.dumps({**meta, "units": {"Bad": "x"}}).encode(), "units"),
        (json.dumps({**meta, "interval_ms": True}).encode(), "interval_ms"),
        (json.dumps({**meta, "decimals": [1]}).encode(), "'decimals' must be an object"),
        (json.dumps({**meta, "decimals": {"ghost": 2}}).encode(), "'ghost', which has no"),
        (json.dumps({**meta, "decimals": {"temperature": -1}}).encode(), "not 0 to 6"),
        (json.dumps({**meta, "decimals": {"temperature": 99}}).encode(), "not 0 to 6"),
        (json.dumps({**meta, "decimals": {"temperature": 1.5}}).encode(), "whole number"),
        (json.dumps({**meta, "decimals": {"temperature": True}}).encode(), "whole number"),
    ]:
        with pytest.raises(ValueError, match=says):
            discovery.board_from_meta(bad)


def test_config_topics_are_parsed_back_under_any_prefix() -> None:
    parse = discovery.parse_config_topic
    assert parse("homeassistant", "homeassistant/sensor/kitchen/humidity/config") == (
        "sensor",
        "kitchen",
        "humidity",
    )
    assert parse("ha/test", "ha/test/button/k/read_now/config") == ("button", "k", "read_now")
    assert parse("homeassistant", "homeassistant/sensor/humidity/config") is None
    assert parse("homeassistant", "other/sensor/kitchen/humidity/config") is None
