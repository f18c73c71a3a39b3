"""The serial line protocol between a board and the host: one JSON object per line.

This module is the host's half of the contract described in ``docs/protocol.md``; the
firmware's half is ``firmware/wire.py``. Both are tested against the same vectors in
``tests/vectors/wire.json``. Pure code: no I/O, no clock.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_LINE_BYTES = 1024
"""A line longer than this (newline excluded) is rejected; a board never needs more."""

DEVICE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""Device ids become MQTT topic levels: no ``/``, ``+``, ``#``, NUL or spaces."""

BOOT_ID_RE = re.compile(r"[0-9a-f]{8}")
METRIC_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
COMMAND_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_METRICS = 32
MAX_DECIMALS = 6
"""The most decimals a board writes a value with (firmware/wire.py caps them the same)."""


class LineRejected(ValueError):
    """A line that is not valid protocol; ``reason`` is a short stable code for counters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Reading:
    device: str
    boot: str
    seq: int
    uptime_ms: int
    metrics: dict[str, float]


@dataclass(frozen=True, slots=True)
class Hello:
    device: str
    boot: str
    uptime_ms: int
    fw: str
    board: str
    sensors: list[str]
    units: dict[str, str]
    interval_ms: int
    # How many decimals the board writes each metric with; empty from older firmware, which
    # does not say (optional on the wire, docs/protocol.md).
    decimals: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SensorError:
    device: str
    boot: str
    uptime_ms: int
    sensor: str
    reason: str


@dataclass(frozen=True, slots=True)
class Answer:
    id: str | None
    ok: bool
    result: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    device: str
    boot: str
    uptime_ms: int
    event: str
    data: dict[str, Any] = field(default_factory=dict)


Line = Reading | Hello | SensorError | Answer | Event


def _reject_constant(name: str) -> float:
    raise LineRejected("not_finite", f"{name} is not a finite number")


def _decode(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_LINE_BYTES:
        raise LineRejected("too_long", f"line is {len(raw)} bytes, limit {MAX_LINE_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineRejected("not_utf8", f"invalid UTF-8 at byte {exc.start}") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise LineRejected("not_json", exc.msg) from None
    if not isinstance(obj, dict):
        raise LineRejected("not_object", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in obj:
        raise LineRejected("missing_field", f"no {name!r}")
    value = obj[name]
    # bool is an int subclass in Python; true/false is never a valid number here.
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise LineRejected("bad_type", f"{name!r} has the wrong type")
    return value


def _matching(obj: dict[str, Any], name: str, pattern: re.Pattern[str]) -> str:
    value: str = _field(obj, name, str)
    if not pattern.fullmatch(value):
        raise LineRejected(f"bad_{name}", f"{name} {value!r} does not match {pattern.pattern}")
    return value


def _count(obj: dict[str, Any], name: str) -> int:
    value: int = _field(obj, name, int)
    if value < 0:
        raise LineRejected("bad_type", f"{name!r} is negative")
    return value


def _metrics(obj: dict[str, Any]) -> dict[str, float]:
    raw: dict[str, Any] = _field(obj, "metrics", dict)
    if not raw:
        raise LineRejected("bad_metrics", "metrics is empty")
    if len(raw) > MAX_METRICS:
        raise LineRejected("bad_metrics", f"{len(raw)} metrics, limit {MAX_METRICS}")
    metrics: dict[str, float] = {}
    for name, value in raw.items():
        if not METRIC_RE.fullmatch(name):
            raise LineRejected("bad_metric_name", f"metric name {name!r} is not allowed")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise LineRejected("not_numeric", f"metric {name!r} is not a number")
        if not math.isfinite(value):
            raise LineRejected("not_finite", f"metric {name!r} is not finite")
        metrics[name] = float(value)
    return metrics


def _origin(obj: dict[str, Any]) -> tuple[str, str, int]:
    return (
        _matching(obj, "device", DEVICE_ID_RE),
        _matching(obj, "boot", BOOT_ID_RE),
        _count(obj, "uptime_ms"),
    )


def _reading(obj: dict[str, Any]) -> Reading:
    device, boot, uptime = _origin(obj)
    return Reading(device, boot, _count(obj, "seq"), uptime, _metrics(obj))


def parse_decimals(obj: dict[str, Any], units: dict[str, str]) -> dict[str, int]:
    """The optional ``decimals`` of a hello, an info answer or a meta: for metrics it has
    units for, 0 to MAX_DECIMALS each; {} when absent."""
    if "decimals" not in obj:
        return {}
    raw = obj["decimals"]
    if not isinstance(raw, dict):
        raise LineRejected("bad_decimals", "'decimals' must be an object")
    for name, value in raw.items():
        if name not in units:
            raise LineRejected("bad_decimals", f"decimals for {name!r}, which has no unit")
        if isinstance(value, bool) or not isinstance(value, int):
            raise LineRejected("bad_decimals", f"decimals of {name!r} is not a whole number")
        if not 0 <= value <= MAX_DECIMALS:
            raise LineRejected(
                "bad_decimals", f"decimals of {name!r} is {value}, not 0 to {MAX_DECIMALS}"
            )
    return raw


def _hello(obj: dict[str, Any]) -> Hello:
    device, boot, uptime = _origin(obj)
    sensors = _field(obj, "sensors", list)
    units = _field(obj, "units", dict)
    if not all(isinstance(s, str) for s in sensors):
        raise LineRejected("bad_type", "'sensors' must be a list of strings")
    if not all(METRIC_RE.fullmatch(k) and isinstance(v, str) for k, v in units.items()):
        raise LineRejected("bad_type", "'units' must map metric names to strings")
    return Hello(
        device,
        boot,
        uptime,
        _field(obj, "fw", str),
        _field(obj, "board", str),
        sensors,
        units,
        _count(obj, "interval_ms"),
        parse_decimals(obj, units),
    )


def _sensor_error(obj: dict[str, Any]) -> SensorError:
    device, boot, uptime = _origin(obj)
    return SensorError(device, boot, uptime, _field(obj, "sensor", str), _field(obj, "reason", str))


def _answer(obj: dict[str, Any]) -> Answer:
    answer_id = obj.get("id")
    if answer_id is not None and not (
        isinstance(answer_id, str) and COMMAND_ID_RE.fullmatch(answer_id)
    ):
        raise LineRejected("bad_id", f"answer id {answer_id!r} is not allowed")
    ok: bool = _field(obj, "ok", bool)
    if ok:
        return Answer(answer_id, True, result=obj.get("result"))
    return Answer(answer_id, False, error=_field(obj, "error", str))


def _event(obj: dict[str, Any]) -> Event:
    device, boot, uptime = _origin(obj)
    data = obj.get("data", {})
    if not isinstance(data, dict):
        raise LineRejected("bad_type", "'data' must be an object")
    return Event(device, boot, uptime, _field(obj, "event", str), data)


_PARSERS: dict[str, Callable[[dict[str, Any]], Line]] = {
    "reading": _reading,
    "hello": _hello,
    "error": _sensor_error,
    "answer": _answer,
    "event": _event,
}


def parse_line(raw: bytes) -> Line:
    """Turn one line from the board (without its newline) into a typed value, or raise
    :class:`LineRejected` saying what is wrong with it."""
    obj = _decode(raw.rstrip(b"\r"))
    kind = obj.get("type")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise LineRejected("unknown_type", f"type {kind!r} is not one of {sorted(_PARSERS)}")
    return parser(obj)


def hello_from_info(result: Any) -> Hello:
    """The answer to an ``info`` command describes the board just as its hello line does."""
    if not isinstance(result, dict):
        raise LineRejected("bad_type", "an info answer must be an object")
    return _hello(result)


def encode_command(command_id: str, cmd: str, args: dict[str, Any] | None = None) -> bytes:
    """The line the host writes to the board to ask it something."""
    if not COMMAND_ID_RE.fullmatch(command_id):
        raise ValueError(f"command id {command_id!r} does not match {COMMAND_ID_RE.pattern}")
    body: dict[str, Any] = {"id": command_id, "cmd": cmd}
    if args:
        body["args"] = args
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True, slots=True)
class Replayed:
    """What a board answered to ``replay``: it wrote ``sent`` readings of ``boot`` again
    (the first with seq ``first``, None if none) and no longer holds ``missing`` of the
    seqs asked for."""

    boot: str
    sent: int
    first: int | None
    missing: int


def encode_replay(command_id: str, boot: str | None, after: int) -> bytes:
    """Ask a board for the readings of ``boot`` after seq ``after`` (-1: all of them) that
    it still holds; with another boot than its own (or None) it sends all it holds."""
    if isinstance(after, bool) or not isinstance(after, int) or after < -1:
        raise ValueError(f"after must be a whole number >= -1, not {after!r}")
    if boot is not None and not BOOT_ID_RE.fullmatch(boot):
        raise ValueError(f"boot {boot!r} does not match {BOOT_ID_RE.pattern}")
    args: dict[str, Any] = {"after": after} if boot is None else {"boot": boot, "after": after}
    return encode_command(command_id, "replay", args)


def replayed_from_answer(answer: Answer) -> Replayed:
    """The typed result of an ``ok`` answer to ``replay``; raises :class:`LineRejected`
    if it is not one (a failed answer's error is in ``answer.error``)."""
    if not answer.ok or not isinstance(answer.result, dict):
        raise LineRejected("bad_type", f"not a successful replay answer: {answer.error!r}")
    result: dict[str, Any] = answer.result
    first = result.get("first")
    if first is not None:
        first = _count(result, "first")
    return Replayed(
        _matching(result, "boot", BOOT_ID_RE),
        _count(result, "sent"),
        first,
        _count(result, "missing"),
    )
