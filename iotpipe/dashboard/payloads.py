"""The dashboard's side of the MQTT contract beyond telemetry: status, meta and answers.

Anyone with access to the broker can publish anything, so each payload becomes a typed,
size-checked value here or a :class:`PayloadRejected` with a reason for the counters.
Telemetry itself is validated by :func:`iotpipe.topics.parse_telemetry`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from iotpipe.topics import MAX_PAYLOAD_BYTES, OFFLINE, ONLINE, PayloadRejected
from iotpipe.wire import METRIC_RE

MAX_UNIT_CHARS = 16
MAX_TEXT_CHARS = 64


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    device: str
    status: str


@dataclass(frozen=True, slots=True)
class MetaUpdate:
    device: str
    meta: dict[str, Any]


def _object(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadRejected("too_long", f"{len(payload)} bytes, limit {MAX_PAYLOAD_BYTES}")
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadRejected("not_json", str(exc)) from None
    if not isinstance(obj, dict):
        raise PayloadRejected("not_object", "expected a JSON object")
    return obj


def parse_status(device: str, payload: bytes) -> StatusUpdate:
    if payload not in (ONLINE, OFFLINE):
        raise PayloadRejected("bad_status", f"status must be online or offline, not {payload!r}")
    return StatusUpdate(device, payload.decode())


def _text(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name, "")
    if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS:
        raise PayloadRejected("bad_meta", f"{name!r} must be text of at most {MAX_TEXT_CHARS}")
    return value


def parse_meta(device: str, payload: bytes) -> MetaUpdate:
    """Keep only the fields the page shows: units, sensors, firmware, board, interval."""
    obj = _object(payload)
    units = obj.get("units", {})
    if not isinstance(units, dict) or not all(
        isinstance(k, str)
        and METRIC_RE.fullmatch(k)
        and isinstance(v, str)
        and len(v) <= MAX_UNIT_CHARS
        for k, v in units.items()
    ):
        raise PayloadRejected("bad_meta", "'units' must map metric names to short text")
    sensors = obj.get("sensors", [])
    if not isinstance(sensors, list) or not all(
        isinstance(s, str) and len(s) <= MAX_TEXT_CHARS for s in sensors
    ):
        raise PayloadRejected("bad_meta", "'sensors' must be a list of short text")
    interval = obj.get("interval_ms")
    if interval is not None and (isinstance(interval, bool) or not isinstance(interval, int)):
        raise PayloadRejected("bad_meta", "'interval_ms' must be a whole number")
    meta = {
        "fw": _text(obj, "fw"),
        "board": _text(obj, "board"),
        "sensors": sensors,
        "units": units,
        "interval_ms": interval,
    }
    return MetaUpdate(device, meta)
