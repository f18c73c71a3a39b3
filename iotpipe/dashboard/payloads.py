"""What the dashboard keeps of status and meta payloads, parsed by the MQTT contract
(``iotpipe.topics``, ``iotpipe.mqttwire.meta``): anyone with access to the broker can
publish anything, so a payload is a typed value here or a :class:`PayloadRejected` with a
reason for the counters. Telemetry is parsed by :func:`iotpipe.topics.parse_telemetry`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iotpipe import topics
from iotpipe.mqttwire.meta import parse_meta as parse_meta_payload


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    device: str
    status: str


@dataclass(frozen=True, slots=True)
class MetaUpdate:
    device: str
    meta: dict[str, Any]


def parse_status(device: str, payload: bytes) -> StatusUpdate:
    return StatusUpdate(device, "online" if topics.parse_status(payload) else "offline")


def parse_meta(device: str, payload: bytes) -> MetaUpdate:
    """Keep only the members the page shows: units, sensors, firmware, board, interval.
    The topic names the device."""
    meta = parse_meta_payload(payload)
    page = {
        "fw": meta.fw,
        "board": meta.board,
        "sensors": meta.sensors,
        "units": meta.units,
        "interval_ms": meta.interval_ms,
    }
    return MetaUpdate(device, page)
