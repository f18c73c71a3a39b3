"""The MQTT contract's root: every topic name, the message, the rejection, and the
payloads of the two kinds every part handles (status and telemetry).

Every topic lives under a base (``iotpipe`` by default)::

    <base>/<device>/telemetry   QoS 1, one reading as JSON (Telemetry, here)
    <base>/<device>/status      retained, "online" / "offline" (here)
    <base>/<device>/meta        retained, what the board said about itself (mqttwire.meta)
    <base>/<device>/cmd         requests to the board (mqttwire.request)
    <base>/<device>/reply       answers to requests that named no other reply topic
                                (mqttwire.answer)
    <base>/<device>/event       unsolicited board events, gap reports (mqttwire.event)
    <base>/<device>/alert       the dashboard's alerts (mqttwire.alert)
    <base>/bridge/<name>/status retained, "online" / "offline" of the bridge process itself
    <base>/dashboard/<client>/reply  answers to one dashboard's requests
    <prefix>/<component>/<node>/<object>/config  Home Assistant (mqttwire.discovery)

Each parser returns a typed value or raises :class:`PayloadRejected` with a reason.
Pure code: no I/O. ``docs/protocol.md`` describes the same contract for people, and
``tests/vectors/mqtt.json`` holds the exact bytes (the host and the firmware check both).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from iotpipe.wire import BOOT_ID_RE, DEVICE_ID_RE, MAX_METRICS, METRIC_RE

BASE_RE = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
LEVEL_RE = re.compile(r"[A-Za-z0-9_.-]+")
KINDS = ("telemetry", "status", "meta", "cmd", "reply", "event", "alert")
MAX_PAYLOAD_BYTES = 4096
ONLINE = b"online"
OFFLINE = b"offline"


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message to publish, as the contract builds it."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


class PayloadRejected(ValueError):
    """An MQTT message that is not valid for its topic; ``reason`` is a stable counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def check_base(base: str) -> str:
    """A base topic must be plain levels: no wildcards, no empty level, no leading slash."""
    if not BASE_RE.fullmatch(base):
        raise ValueError(
            f"base topic {base!r} must be levels of letters, digits, '_', '.', '-' "
            "separated by '/' (no wildcards, no leading or trailing '/')"
        )
    return base


def topic(base: str, device: str, kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown topic kind {kind!r}")
    if not DEVICE_ID_RE.fullmatch(device):
        raise ValueError(f"device id {device!r} is not safe in a topic")
    return f"{base}/{device}/{kind}"


def bridge_status(base: str, name: str) -> str:
    """``<base>/bridge/<name>/status``: retained online/offline of a bridge process itself
    (its MQTT will), apart from the status of the board it serves."""
    if not DEVICE_ID_RE.fullmatch(name):
        raise ValueError(f"bridge name {name!r} is not safe in a topic")
    return f"{base}/bridge/{name}/status"


def dashboard_reply(base: str, client_id: str) -> str:
    """``<base>/dashboard/<client-id>/reply``: where one dashboard's requests are answered
    (the broker's ACL lets boards publish there, docs/security.md)."""
    if not LEVEL_RE.fullmatch(client_id):
        raise ValueError(f"client id {client_id!r} is not one topic level")
    return f"{base}/dashboard/{client_id}/reply"


def subscription(base: str, kind: str) -> str:
    """The filter that matches ``kind`` for every device."""
    if kind not in KINDS:
        raise ValueError(f"unknown topic kind {kind!r}")
    return f"{base}/+/{kind}"


def split(base: str, name: str) -> tuple[str, str]:
    """``<base>/<device>/<kind>`` → (device, kind), or raise PayloadRejected."""
    prefix = base + "/"
    rest = name[len(prefix) :] if name.startswith(prefix) else None
    parts = rest.split("/") if rest is not None else []
    if len(parts) != 2 or parts[1] not in KINDS or not DEVICE_ID_RE.fullmatch(parts[0]):
        raise PayloadRejected("bad_topic", f"{name!r} is not <{base}>/<device>/<kind>")
    return parts[0], parts[1]


def status_payload(online: bool) -> bytes:
    return ONLINE if online else OFFLINE


def parse_status(payload: bytes) -> bool:
    """True for ``online``, False for ``offline``. An empty retained payload clears the
    topic: the caller sees it before parsing (for every retained kind)."""
    if payload not in (ONLINE, OFFLINE):
        raise PayloadRejected("bad_status", f"status must be online or offline, not {payload!r}")
    return payload == ONLINE


def _reject_constant(name: str) -> float:
    raise PayloadRejected("not_finite", f"{name} is not a finite number")


def json_object(payload: bytes, limit: int = MAX_PAYLOAD_BYTES) -> dict[str, Any]:
    """The JSON object every payload but status is: size-checked, strict (no NaN)."""
    if len(payload) > limit:
        raise PayloadRejected("too_long", f"{len(payload)} bytes, limit {limit}")
    try:
        obj = json.loads(payload, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PayloadRejected("not_json", f"not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise PayloadRejected("not_object", "not a JSON object")
    return obj


def compact(obj: object, ascii_only: bool = False) -> bytes:
    """JSON without spaces, as every iotpipe payload but the alert is written."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=ascii_only).encode()


@dataclass(frozen=True, slots=True)
class Telemetry:
    """One reading as it travels over MQTT.

    ``ts`` is when the bridge received the line (Unix seconds, UTC); ``uptime_ms`` is the
    board's own clock within boot ``boot``. ``(device, boot, seq)`` identifies the reading,
    so a subscriber can drop a duplicate.
    """

    device: str
    boot: str
    seq: int
    ts: float
    uptime_ms: int
    metrics: dict[str, float]

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "device": self.device,
                "boot": self.boot,
                "seq": self.seq,
                "ts": self.ts,
                "uptime_ms": self.uptime_ms,
                "metrics": self.metrics,
            },
            separators=(",", ":"),
        ).encode()


def _number(obj: dict[str, Any], name: str) -> float:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PayloadRejected("bad_field", f"{name!r} must be a finite number")
    return float(value)


def _whole(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PayloadRejected("bad_field", f"{name!r} must be a whole number >= 0")
    return value


def _matching(obj: dict[str, Any], name: str, pattern: re.Pattern[str]) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise PayloadRejected("bad_field", f"{name!r} must match {pattern.pattern}")
    return value


def _metrics(obj: dict[str, Any]) -> dict[str, float]:
    raw = obj.get("metrics")
    if not isinstance(raw, dict) or not raw or len(raw) > MAX_METRICS:
        raise PayloadRejected("bad_field", f"'metrics' must be an object of 1..{MAX_METRICS}")
    for name in raw:
        if not METRIC_RE.fullmatch(name):
            raise PayloadRejected("bad_field", f"metric name {name!r} is not allowed")
    return {name: _number(raw, name) for name in raw}


def parse_telemetry(payload: bytes) -> Telemetry:
    """Validate a telemetry payload from the broker (anyone may have published it)."""
    obj = json_object(payload)
    return Telemetry(
        device=_matching(obj, "device", DEVICE_ID_RE),
        boot=_matching(obj, "boot", BOOT_ID_RE),
        seq=_whole(obj, "seq"),
        ts=_number(obj, "ts"),
        uptime_ms=_whole(obj, "uptime_ms"),
        metrics=_metrics(obj),
    )
