"""Home Assistant MQTT discovery: what each board is announced as — Home Assistant's
wire, built here for the bridge (from a hello) and ``iotpipe announce`` (from a meta), and
read back here to tell an iotpipe config from anybody else's. Pure: no I/O.

One retained config per metric (``<prefix>/sensor/<node>/<metric>/config``) and one
"read now" button (``<prefix>/button/<node>/read_now/config``), as Home Assistant's MQTT
documentation describes them: full option names (no abbreviations — a host has the bytes),
``default_entity_id`` (``object_id`` is deprecated since 2025.10 and ignored from 2026.4),
``origin``, per-entry availability, a device class only where Home Assistant allows the
board's unit for it, ``suggested_display_precision`` from the board's decimals and
``expire_after`` from its interval. An empty retained config removes an entity: a metric
the board no longer has, or a whole board (``removals``). docs/homeassistant.md explains.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from iotpipe import __version__, topics, wire
from iotpipe.mqttwire.meta import parse_meta
from iotpipe.topics import Message, PayloadRejected

DEFAULT_PREFIX = "homeassistant"
READ_NOW = "read_now"
READ_NOW_PAYLOAD = '{"id":"homeassistant-read-now","cmd":"read"}'
NODE_ID_RE = re.compile(r"[a-zA-Z0-9_-]+")  # Home Assistant's discovery topic levels
ORIGIN = {"name": "iotpipe", "sw_version": __version__}
MIN_EXPIRE_S = 60
MISSED_READINGS = 3  # a value older than this many intervals is shown as unavailable

# Units Home Assistant accepts per device class (its sensor DEVICE_CLASS_UNITS; the
# Home Assistant test tier checks this table against the installed release). A class
# whose unit does not fit is not sent: Home Assistant would log an error per entity.
UNITS: dict[str, frozenset[str]] = {
    "temperature": frozenset({"°C", "°F", "K"}),
    "humidity": frozenset({"%"}),
    "battery": frozenset({"%"}),
    "moisture": frozenset({"%"}),
    "voltage": frozenset({"V", "mV", "µV", "kV", "MV"}),
    "current": frozenset({"A", "mA"}),
    "power": frozenset({"W", "kW", "MW"}),
    "energy": frozenset({"Wh", "kWh", "MWh"}),
    "illuminance": frozenset({"lx"}),
    "atmospheric_pressure": frozenset(
        {"Pa", "hPa", "kPa", "mbar", "bar", "cbar", "mmHg", "inHg", "psi"}
    ),
    "carbon_dioxide": frozenset({"ppm"}),
    "pm25": frozenset({"µg/m³"}),
    "pm10": frozenset({"µg/m³"}),
}
# A metric's name, or its last word (``mcu_temperature``, ``soil_moisture``), says what
# it measures; the unit decides among the candidates (a battery in V is a voltage).
BY_NAME: dict[str, tuple[str, ...]] = {
    "temperature": ("temperature",),
    "humidity": ("humidity",),
    "battery": ("battery", "voltage"),
    "moisture": ("moisture",),
    "voltage": ("voltage",),
    "current": ("current",),
    "power": ("power",),
    "energy": ("energy",),
    "illuminance": ("illuminance",),
    "light": ("illuminance",),
    "lux": ("illuminance",),
    "pressure": ("atmospheric_pressure",),
    "co2": ("carbon_dioxide",),
    "pm25": ("pm25",),
    "pm10": ("pm10",),
}
# With no telling name, a unit that belongs to one class only still says it.
BY_UNIT: dict[str, str] = {
    unit: name
    for name in (
        "temperature",
        "voltage",
        "current",
        "power",
        "energy",
        "illuminance",
        "atmospheric_pressure",
    )
    for unit in UNITS[name]
}
STATE_CLASSES = {"energy": "total_increasing"}  # a meter's count; the rest are samples


@dataclass(frozen=True, slots=True)
class Board:
    """What discovery needs to know of a board: from its hello, or its retained meta."""

    device: str
    fw: str
    model: str
    units: dict[str, str]
    interval_ms: int
    decimals: dict[str, int] = field(default_factory=dict)


def board_from_hello(hello: wire.Hello) -> Board:
    return Board(
        hello.device,
        hello.fw,
        hello.board,
        dict(hello.units),
        hello.interval_ms,
        dict(hello.decimals),
    )


def board_from_meta(payload: bytes) -> Board:
    """A retained ``<base>/<device>/meta`` (anyone may have published it), checked by the
    meta's contract; announcing it needs its ``device`` and ``interval_ms``."""
    meta = parse_meta(payload)
    if meta.device is None or meta.interval_ms is None:
        raise PayloadRejected("bad_meta", "a meta to announce names its device and interval_ms")
    return Board(meta.device, meta.fw, meta.board, meta.units, meta.interval_ms, meta.decimals)


def node_id(device: str) -> str:
    """The discovery topic level of a device. Ids Home Assistant accepts stay as they are
    (so configs published before keep their topic); others (``kitchen.v2``) get their odd
    characters replaced and 8 hex digits of the id's SHA-256 appended, so two ids that
    differ only there (``kitchen.v2``, ``kitchen-v2``) never share a node."""
    if NODE_ID_RE.fullmatch(device):
        return device
    digest = hashlib.sha256(device.encode()).hexdigest()[:8]
    return f"{re.sub(r'[^a-zA-Z0-9_-]', '_', device)}_{digest}"


def slug(text: str) -> str:
    """An entity id's object part as Home Assistant makes them: [a-z0-9_], no ``__``."""
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9]", "_", text.lower())).strip("_") or "board"


def device_class(metric: str, unit: str) -> str | None:
    named = BY_NAME.get(metric) or BY_NAME.get(metric.rsplit("_", 1)[-1], ())
    for candidate in named:
        if unit in UNITS[candidate]:
            return candidate
    return BY_UNIT.get(unit)


def expire_after(interval_ms: int) -> int:
    """Seconds after which Home Assistant shows a value as unavailable: three missed
    readings, at least a minute (a board that skips one reading is not gone)."""
    return max(MIN_EXPIRE_S, math.ceil(MISSED_READINGS * interval_ms / 1000))


def config_topic(prefix: str, component: str, device: str, object_id: str) -> str:
    return f"{prefix}/{component}/{node_id(device)}/{object_id}/config"


def birth_topic(prefix: str = DEFAULT_PREFIX) -> str:
    """Home Assistant says ``online`` here when it (re)starts: time to publish again."""
    return f"{prefix}/status"


def _json(body: Mapping[str, object]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _common(board: Board, base: str, bridge_status: str | None) -> dict[str, object]:
    status = [{"topic": topics.topic(base, board.device, "status")}]
    return {
        "availability": ([{"topic": bridge_status}] if bridge_status else []) + status,
        "availability_mode": "all",
        "payload_available": topics.ONLINE.decode(),
        "payload_not_available": topics.OFFLINE.decode(),
        "device": {
            "identifiers": [f"iotpipe_{board.device}"],
            "name": board.device,
            "model": board.model,
            "sw_version": board.fw,
            "manufacturer": "iotpipe",
        },
        "origin": ORIGIN,
    }


def sensor_config(board: Board, metric: str, common: Mapping[str, object], base: str) -> bytes:
    unit = board.units[metric]
    kind = device_class(metric, unit)
    config: dict[str, object] = {
        "name": metric.replace("_", " "),
        "unique_id": f"iotpipe_{board.device}_{metric}",
        "default_entity_id": f"sensor.{slug(board.device)}_{slug(metric)}",
        "state_topic": topics.topic(base, board.device, "telemetry"),
        # A reading without this metric (its sensor failed this time) renders "", which
        # Home Assistant ignores for a numeric sensor: the last value stays, no warning.
        "value_template": f"{{{{ value_json.metrics.{metric} "
        f"if 'metrics' in value_json and '{metric}' in value_json.metrics else '' }}}}",
        "state_class": STATE_CLASSES.get(kind or "", "measurement"),
        "expire_after": expire_after(board.interval_ms),
        **common,
    }
    if unit:
        config["unit_of_measurement"] = unit
    if kind is not None:
        config["device_class"] = kind
    if metric in board.decimals:
        config["suggested_display_precision"] = board.decimals[metric]
    return _json(config)


def button_config(board: Board, common: Mapping[str, object], base: str) -> bytes:
    """ "Read now": the board's ``read`` command; its answer goes to ``<device>/reply`` and
    the reading it takes reaches the sensors like any other."""
    return _json(
        {
            "name": "read now",
            "unique_id": f"iotpipe_{board.device}_{READ_NOW}",
            "default_entity_id": f"button.{slug(board.device)}_{READ_NOW}",
            "command_topic": topics.topic(base, board.device, "cmd"),
            "payload_press": READ_NOW_PAYLOAD,
            "qos": 1,
            **common,
        }
    )


def announced_topics(board: Board, prefix: str) -> set[str]:
    return {config_topic(prefix, "sensor", board.device, m) for m in board.units} | {
        config_topic(prefix, "button", board.device, READ_NOW)
    }


def configs(
    hello: wire.Hello | Board,
    base: str,
    bridge_status: str | None,
    prefix: str = DEFAULT_PREFIX,
    before: wire.Hello | Board | None = None,
) -> list[Message]:
    """Every config of the board, retained; ``bridge_status`` joins its availability when
    a bridge speaks for it. With ``before`` (what was announced last), the metrics it had
    and this one lacks are removed."""
    board = hello if isinstance(hello, Board) else board_from_hello(hello)
    common = _common(board, base, bridge_status)
    messages = [
        Message(
            config_topic(prefix, "sensor", board.device, metric),
            sensor_config(board, metric, common, base),
            retain=True,
        )
        for metric in sorted(board.units)
    ]
    button = button_config(board, common, base)
    messages.append(
        Message(config_topic(prefix, "button", board.device, READ_NOW), button, retain=True)
    )
    if before is not None:
        old = before if isinstance(before, Board) else board_from_hello(before)
        if old.device == board.device:
            gone = announced_topics(old, prefix) - announced_topics(board, prefix)
            messages += removals(sorted(gone))
    return messages


def removals(config_topics: Iterable[str]) -> list[Message]:
    """Empty retained configs: Home Assistant deletes those entities (and a device left
    with none), and the broker forgets the retained config."""
    return [Message(t, b"", retain=True) for t in config_topics]


def parse_config_topic(prefix: str, name: str) -> tuple[str, str, str] | None:
    """``<prefix>/<component>/<node>/<object>/config`` → (component, node, object)."""
    parts = name.split("/")
    levels = prefix.count("/") + 1
    if len(parts) != levels + 4 or "/".join(parts[:levels]) != prefix or parts[-1] != "config":
        return None
    component, node, object_id = parts[levels : levels + 3]
    return component, node, object_id


def config_owner(base: str, payload: bytes) -> str | None:
    """The iotpipe device a discovery config belongs to, or None if it is not about a
    board under ``base`` (configs of release 1b120ab had no ``origin``; their device block
    and topics say it all the same)."""
    try:
        body = json.loads(payload)
        about, ids = body["device"], body["device"]["identifiers"]
        topic = body.get("state_topic") or body["command_topic"]
        device, _kind = topics.split(base, topic)
    except (ValueError, KeyError, TypeError, AttributeError):  # PayloadRejected too
        return None
    if about.get("manufacturer") != "iotpipe" or ids != [f"iotpipe_{device}"]:
        return None
    return device
