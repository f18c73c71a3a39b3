"""What each kind of board line becomes on MQTT: pure translation, no I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from iotpipe import topics
from iotpipe.wire import Answer, Event, Hello, Line, Reading, SensorError

if TYPE_CHECKING:
    from iotpipe.bridge.continuity import Gap


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class Translator:
    def __init__(self, base: str) -> None:
        self.base = base

    def status(self, device: str, online: bool) -> Message:
        payload = topics.ONLINE if online else topics.OFFLINE
        return Message(topics.topic(self.base, device, "status"), payload, retain=True)

    def bridge_status(self, name: str, online: bool) -> Message:
        payload = topics.ONLINE if online else topics.OFFLINE
        return Message(topics.bridge_status(self.base, name), payload, retain=True)

    def gap(self, gap: Gap, boot: str, received_at: float) -> Message:
        """A ``readings_missing`` event (docs/protocol.md): ``boot`` is the board's now."""
        event = {
            "device": gap.device,
            "boot": boot,
            "uptime_ms": None,
            "ts": round(received_at, 3),
            "event": "readings_missing",
            "data": {
                "boot": gap.boot,
                "first": gap.first,
                "last": gap.last,
                "count": gap.count,
                "where": gap.where,
            },
        }
        return Message(topics.topic(self.base, gap.device, "event"), _json(event))

    def message(self, line: Line, device: str, received_at: float) -> Message:
        """``device`` is the board on this port (answers do not name it themselves)."""
        match line:
            case Reading():
                telemetry = topics.Telemetry(
                    line.device,
                    line.boot,
                    line.seq,
                    round(received_at, 3),
                    line.uptime_ms,
                    line.metrics,
                )
                return Message(
                    topics.topic(self.base, line.device, "telemetry"), telemetry.to_json()
                )
            case Hello():
                meta = {
                    "device": line.device,
                    "boot": line.boot,
                    "fw": line.fw,
                    "board": line.board,
                    "sensors": line.sensors,
                    "units": line.units,
                    "interval_ms": line.interval_ms,
                    "ts": round(received_at, 3),
                }
                if line.decimals:  # older firmware does not say: the meta does not either
                    meta["decimals"] = line.decimals
                return Message(
                    topics.topic(self.base, line.device, "meta"), _json(meta), retain=True
                )
            case SensorError():
                event = {
                    "device": line.device,
                    "boot": line.boot,
                    "uptime_ms": line.uptime_ms,
                    "ts": round(received_at, 3),
                    "event": "sensor_error",
                    "data": {"sensor": line.sensor, "reason": line.reason},
                }
                return Message(topics.topic(self.base, line.device, "event"), _json(event))
            case Event():
                event = {
                    "device": line.device,
                    "boot": line.boot,
                    "uptime_ms": line.uptime_ms,
                    "ts": round(received_at, 3),
                    "event": line.event,
                    "data": line.data,
                }
                return Message(topics.topic(self.base, line.device, "event"), _json(event))
            case Answer():
                answer = {"id": line.id, "ok": line.ok}
                answer.update({"result": line.result} if line.ok else {"error": line.error})
                return Message(topics.topic(self.base, device, "reply"), _json(answer))
