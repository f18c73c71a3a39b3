"""What the writer has just committed, told to those who show it or judge it: the live hub
(Server-Sent Events to open pages) and the alert rules. Only stored readings go out, so a
page or an alert never shows what a crash could still lose."""

from __future__ import annotations

from typing import Any

from iotpipe.dashboard.alerts import Alerts
from iotpipe.dashboard.live import Hub
from iotpipe.dashboard.payloads import MetaUpdate, StatusUpdate
from iotpipe.dashboard.writer import Item
from iotpipe.topics import Telemetry


def reading_event(r: Telemetry) -> dict[str, Any]:
    return {"device": r.device, "ts": r.ts, "seq": r.seq, "metrics": r.metrics}


class Fanout:
    """Tells the live hub and the alert rules about what the writer has just stored."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.alerts: Alerts | None = None

    def __call__(self, items: list[Item]) -> None:
        for item in items:
            if isinstance(item, Telemetry):
                if self.hub.clients:  # no page open: no need to encode the event
                    self.hub.publish("reading", reading_event(item))
                if self.alerts is not None and self.alerts.rules.rules:
                    self.alerts.check(item)
            elif isinstance(item, StatusUpdate):
                self.hub.publish("status", {"device": item.device, "status": item.status})
                if self.alerts is not None:
                    self.alerts.status(item.device, item.status)
            elif isinstance(item, MetaUpdate):
                self.hub.publish("meta", {"device": item.device, **item.meta})
                if self.alerts is not None:
                    self.alerts.meta(item.device, item.meta)
