"""``<base>/<device>/meta``, retained: what a board said about itself (its hello), plus
when it was heard. Built by the bridge from a hello line and by a Wi-Fi board itself
(``firmware/payload.py``); read by the dashboard (units, interval), by discovery (what to
announce to Home Assistant) and by deploy's check of a Wi-Fi board.

Every member is checked when it is there; one that is missing takes its empty value,
because metas written by hand (and by older releases) leave members out and the
consumers that need one (discovery: ``device``, ``units``, ``interval_ms``) say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from iotpipe import wire
from iotpipe.topics import PayloadRejected, compact, json_object

MAX_UNIT_CHARS = 16
MAX_TEXT_CHARS = 64


@dataclass(frozen=True, slots=True)
class Meta:
    device: str | None  # None only in a meta written by hand: the topic names the device
    boot: str | None
    fw: str
    board: str
    sensors: list[str]
    units: dict[str, str]
    interval_ms: int | None
    ts: float | None  # when it was heard; None from a board whose clock is not yet set
    # How many decimals the board writes each metric with; {} from firmware that does not
    # say (and then the payload leaves the member out).
    decimals: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> bytes:
        body: dict[str, Any] = {
            "device": self.device,
            "boot": self.boot,
            "fw": self.fw,
            "board": self.board,
            "sensors": self.sensors,
            "units": self.units,
            "interval_ms": self.interval_ms,
            "ts": self.ts,
        }
        if self.decimals:
            body["decimals"] = self.decimals
        return compact(body)


def from_hello(hello: wire.Hello, received_at: float) -> Meta:
    return Meta(
        hello.device,
        hello.boot,
        hello.fw,
        hello.board,
        hello.sensors,
        hello.units,
        hello.interval_ms,
        round(received_at, 3),
        hello.decimals,
    )


def _bad(detail: str) -> PayloadRejected:
    return PayloadRejected("bad_meta", detail)


def _text(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name, "")
    if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS:
        raise _bad(f"{name!r} must be text of at most {MAX_TEXT_CHARS} characters")
    return value


def _device(obj: dict[str, Any]) -> str | None:
    value = obj.get("device")
    if value is not None and not (isinstance(value, str) and wire.DEVICE_ID_RE.fullmatch(value)):
        raise _bad(f"'device' must match {wire.DEVICE_ID_RE.pattern}")
    return value


def _boot(obj: dict[str, Any]) -> str | None:
    # Only shown, never matched against a reading's: any short text (metas by hand).
    return _text(obj, "boot") if obj.get("boot") is not None else None


def _units(obj: dict[str, Any]) -> dict[str, str]:
    units = obj.get("units", {})
    if (
        not isinstance(units, dict)
        or len(units) > wire.MAX_METRICS
        or not all(
            isinstance(k, str)
            and wire.METRIC_RE.fullmatch(k)
            and isinstance(v, str)
            and len(v) <= MAX_UNIT_CHARS
            for k, v in units.items()
        )
    ):
        raise _bad(f"'units' must map at most {wire.MAX_METRICS} metric names to short text")
    return units


def _sensors(obj: dict[str, Any]) -> list[str]:
    sensors = obj.get("sensors", [])
    if not isinstance(sensors, list) or not all(
        isinstance(s, str) and len(s) <= MAX_TEXT_CHARS for s in sensors
    ):
        raise _bad("'sensors' must be a list of short text")
    return sensors


def _interval(obj: dict[str, Any]) -> int | None:
    interval = obj.get("interval_ms")
    if interval is not None and (
        isinstance(interval, bool) or not isinstance(interval, int) or interval < 0
    ):
        raise _bad("'interval_ms' must be a whole number >= 0")
    return interval


def _ts(obj: dict[str, Any]) -> float | None:
    ts = obj.get("ts")
    if ts is None:
        return None
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise _bad("'ts' must be a number or null")
    return float(ts)


def parse_meta(payload: bytes) -> Meta:
    """A meta payload from the broker (anyone may have published it), or PayloadRejected."""
    obj = json_object(payload)
    units = _units(obj)
    try:
        decimals = wire.parse_decimals(obj, units)
    except wire.LineRejected as exc:
        raise _bad(exc.detail) from None
    return Meta(
        _device(obj),
        _boot(obj),
        _text(obj, "fw"),
        _text(obj, "board"),
        _sensors(obj),
        units,
        _interval(obj),
        _ts(obj),
        decimals,
    )
