"""The real bridge publishing discovery: a board redeployed without a sensor gets the
config of the metric it dropped emptied (retained), so Home Assistant removes it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import Broker, Procs, start_bridge, wait_until
from tests.test_pipeline import FakeWire


def hello(boot: str, units: dict[str, str]) -> bytes:
    body = {
        "type": "hello",
        "device": "shed.v2",
        "boot": boot,
        "uptime_ms": 1,
        "fw": "0.2.0",
        "board": "fake",
        "sensors": ["sim"],
        "units": units,
        "interval_ms": 1000,
    }
    return json.dumps(body).encode() + b"\n"


def test_the_bridge_removes_the_config_of_a_metric_its_board_dropped(
    procs: Procs, broker: Broker, subscribe, tmp_path: Path
) -> None:
    sub = subscribe("homeassistant/#")
    board = FakeWire(tmp_path / "tty")
    bridge = start_bridge(procs, tmp_path, tmp_path / "tty", broker.url)
    wait_until(lambda: "port_open" in bridge.output(), 10, "the port open")
    board.send(hello("0a1b2c3d", {"temperature": "°C", "battery": "V"}))
    node = "homeassistant/sensor/shed_v2_"  # a dotted id gets a node id Home Assistant takes

    def battery() -> list[Any]:
        return [m for m in sub.on("/battery/config") if m.topic.startswith(node)]

    wait_until(battery, 10, "the battery's config")
    first = json.loads(battery()[-1].payload)
    assert first["device_class"] == "voltage" and first["unit_of_measurement"] == "V"
    assert "object_id" not in first and first["default_entity_id"] == "sensor.shed_v2_battery"

    board.send(hello("0b1b2c3d", {"temperature": "°C"}))  # redeployed without the battery
    wait_until(lambda: battery()[-1].payload == b"", 10, "the battery's config emptied")
    temperature = [m for m in sub.messages if m.topic.endswith("/temperature/config")]
    assert temperature and temperature[-1].payload  # the metric it kept stays announced
