"""Home Assistant MQTT discovery: one retained config per metric. Pure translation.

``homeassistant/sensor/<device>/<metric>/config`` tells Home Assistant where the value is
(the telemetry topic and a template), its unit and device class, and that it is available
only while both the bridge and the board are online.
"""

from __future__ import annotations

import json

from iotpipe.bridge.translate import Message

from iotpipe import topics
from iotpipe.wire import Hello

DEFAULT_PREFIX = "homeassistant"

# Home Assistant device classes by our metric names (units come from the board).
DEVICE_CLASSES = {
    "temperature": "temperature",
    "humidity": "humidity",
    "pressure": "atmospheric_pressure",
    "illuminance": "illuminance",
    "light": "illuminance",
    "voltage": "voltage",
    "current": "current",
    "power": "power",
    "energy": "energy",
    "co2": "carbon_dioxide",
    "pm25": "pm25",
    "pm10": "pm10",
    "battery": "battery",
    "moisture": "moisture",
}


def birth_topic(prefix: str = DEFAULT_PREFIX) -> str:
    """Home Assistant says ``online`` here when it (re)starts: time to publish again."""
    return f"{prefix}/status"


def configs(
    hello: Hello, base: str, bridge_status: str, prefix: str = DEFAULT_PREFIX
) -> list[Message]:
    device = hello.device
    about = {
        "identifiers": [f"iotpipe_{device}"],
        "name": device,
        "model": hello.board,
        "sw_version": hello.fw,
        "manufacturer": "iotpipe",
    }
    availability = [
        {"topic": bridge_status},
        {"topic": topics.topic(base, device, "status")},
    ]
    messages = []
    for metric, unit in sorted(hello.units.items()):
        config: dict[str, object] = {
            "name": metric.replace("_", " "),
            "unique_id": f"iotpipe_{device}_{metric}",
            "object_id": f"{device}_{metric}",
            "state_topic": topics.topic(base, device, "telemetry"),
            "value_template": f"{{{{ value_json.metrics.{metric} }}}}",
            "unit_of_measurement": unit,
            "state_class": "measurement",
            "availability": availability,
            "availability_mode": "all",
            "payload_available": topics.ONLINE.decode(),
            "payload_not_available": topics.OFFLINE.decode(),
            "device": about,
        }
        if metric in DEVICE_CLASSES:
            config["device_class"] = DEVICE_CLASSES[metric]
        payload = json.dumps(config, separators=(",", ":"), ensure_ascii=False).encode()
        messages.append(Message(f"{prefix}/sensor/{device}/{metric}/config", payload, retain=True))
    return messages
