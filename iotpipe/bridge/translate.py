"""What each kind of board line becomes on MQTT: the contract's messages, no I/O."""

from __future__ import annotations

from typing import TYPE_CHECKING

from iotpipe import topics
from iotpipe.mqttwire import event, meta
from iotpipe.mqttwire.answer import encode_answer
from iotpipe.topics import Message as Message  # the bridge's modules name it from here
from iotpipe.wire import Answer, Event, Hello, Line, Reading, SensorError

if TYPE_CHECKING:
    from iotpipe.bridge.continuity import Gap


class Translator:
    def __init__(self, base: str) -> None:
        self.base = base

    def status(self, device: str, online: bool) -> Message:
        payload = topics.status_payload(online)
        return Message(topics.topic(self.base, device, "status"), payload, retain=True)

    def bridge_status(self, name: str, online: bool) -> Message:
        payload = topics.status_payload(online)
        return Message(topics.bridge_status(self.base, name), payload, retain=True)

    def gap(self, gap: Gap, boot: str, received_at: float) -> Message:
        """A ``readings_missing`` event (docs/protocol.md): ``boot`` is the board's now."""
        missing = event.Gap(gap.device, gap.boot, gap.first, gap.last, gap.count, gap.where)
        report = event.gap_report(missing, boot, received_at)
        return Message(topics.topic(self.base, gap.device, "event"), event.encode(report))

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
                payload = meta.from_hello(line, received_at).to_json()
                return Message(topics.topic(self.base, line.device, "meta"), payload, retain=True)
            case SensorError() | Event():
                payload = event.encode(event.from_line(line, received_at))
                return Message(topics.topic(self.base, line.device, "event"), payload)
            case Answer():
                value = line.result if line.ok else line.error
                payload = encode_answer(line.id, line.ok, value)
                return Message(topics.topic(self.base, device, "reply"), payload)
