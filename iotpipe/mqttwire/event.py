"""``<base>/<device>/event``: something a board reported (a sensor error, a board event)
or the bridge found (``readings_missing``, a gap report). Built by the bridge from a line
or a gap and by a Wi-Fi board itself (``firmware/payload.py``); read by the dashboard's
alerts, which turn gap reports into alerts.

``device``, ``boot``, ``uptime_ms`` and ``ts`` are checked when they are there; a
consumer names the device by the topic. ``uptime_ms`` is null when no board line carries
the event (a gap report), ``ts`` when the board's clock was not set yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from iotpipe import wire
from iotpipe.topics import PayloadRejected, compact, json_object

READINGS_MISSING = "readings_missing"
SENSOR_ERROR = "sensor_error"
# Where the readings of a gap report were lost (docs/protocol.md, "Gap reports").
WHERE = {
    "board": "lost before the bridge (serial overflow or cable)",
    "bridge_restart": "across a bridge restart",
    "spool_full": "the bridge's spool was full",
    "beyond_ring": "no longer held by the board for a replay",
}
MAX_GAP_TEXT = 64


@dataclass(frozen=True, slots=True)
class Event:
    device: str | None
    boot: str | None
    uptime_ms: int | None
    ts: float | None
    event: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Gap:
    """A run of readings that will never arrive: seqs ``first``…``last`` of boot ``boot``."""

    device: str
    boot: str
    first: int
    last: int
    count: int
    where: str

    def detail(self) -> str:
        return (
            f"{self.count} readings missing (seq {self.first}-{self.last}, boot {self.boot}), "
            f"{WHERE.get(self.where, self.where)}"
        )


def encode(event: Event) -> bytes:
    return compact(
        {
            "device": event.device,
            "boot": event.boot,
            "uptime_ms": event.uptime_ms,
            "ts": event.ts,
            "event": event.event,
            "data": event.data,
        }
    )


def from_line(line: wire.Event | wire.SensorError, received_at: float) -> Event:
    """A board's event line, or its sensor error as the ``sensor_error`` event."""
    if isinstance(line, wire.SensorError):
        name, data = SENSOR_ERROR, {"sensor": line.sensor, "reason": line.reason}
    else:
        name, data = line.event, line.data
    return Event(line.device, line.boot, line.uptime_ms, round(received_at, 3), name, data)


def gap_report(gap: Gap, boot_now: str, received_at: float) -> Event:
    """``boot_now`` is the board's current boot; ``gap.boot`` the one the readings were of."""
    data = {
        "boot": gap.boot,
        "first": gap.first,
        "last": gap.last,
        "count": gap.count,
        "where": gap.where,
    }
    return Event(gap.device, boot_now, None, round(received_at, 3), READINGS_MISSING, data)


def parse_event(payload: bytes) -> Event:
    obj = json_object(payload)
    name, data = obj.get("event"), obj.get("data", {})
    if not isinstance(name, str) or not name:
        raise PayloadRejected("bad_event", "'event' must name the event")
    if not isinstance(data, dict):
        raise PayloadRejected("bad_event", "'data' must be an object")
    device, boot, uptime, ts = (obj.get(k) for k in ("device", "boot", "uptime_ms", "ts"))
    for member, ok in (
        ("device", device is None or isinstance(device, str)),
        ("boot", boot is None or isinstance(boot, str)),
        ("uptime_ms", uptime is None or _whole(uptime)),
        ("ts", ts is None or _finite(ts)),
    ):
        if not ok:
            raise PayloadRejected("bad_event", f"{member!r} has the wrong type")
    return Event(device, boot, uptime, None if ts is None else float(ts), name, data)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def gap_of(event: Event, device: str) -> Gap | None:
    """The gap a ``readings_missing`` event reports; None for every other event."""
    if event.event != READINGS_MISSING:
        return None
    data = event.data
    numbers = [data.get(k) for k in ("first", "last", "count")]
    if not all(_whole(n) for n in numbers):
        raise PayloadRejected("bad_event", "'first', 'last' and 'count' must be whole numbers")
    first, last, count = (int(n) for n in numbers if isinstance(n, int))
    boot, where = data.get("boot", event.boot or ""), data.get("where", "")
    if not isinstance(boot, str) or not isinstance(where, str) or len(boot + where) > MAX_GAP_TEXT:
        raise PayloadRejected("bad_event", "'boot' and 'where' must be short text")
    return Gap(device, boot, first, last, count, where)
