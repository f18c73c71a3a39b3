"""What an alert says: the stored/announced record, its one-line message, and the
notification's title and body (device, metric, value, unit, threshold, since, chart link).

The gap report payload (Shared contract 2, ``<base>/<device>/event`` with
``event = "readings_missing"``) is validated here too, where it enters the alerts.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from iotpipe.dashboard.alert_engine import Change, key_of
from iotpipe.topics import MAX_PAYLOAD_BYTES, PayloadRejected

WHERE = {
    "board": "lost before the bridge (serial overflow or cable)",
    "bridge_restart": "across a bridge restart",
    "spool_full": "the bridge's spool was full",
    "beyond_ring": "no longer held by the board for a replay",
}
CHART_MARGIN_S = 1800.0
"""The chart link shows this much before the alert began and after it was sent."""


@dataclass(frozen=True, slots=True)
class Gap:
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


def parse_gap(device: str, payload: bytes) -> Gap | None:
    """A ``readings_missing`` event as a Gap; None for other events; rejected when broken."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadRejected("too_long", f"{len(payload)} bytes")
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadRejected("not_json", str(exc)) from None
    if not isinstance(obj, dict) or obj.get("event") != "readings_missing":
        return None
    data = obj.get("data")
    if not isinstance(data, dict):
        raise PayloadRejected("bad_event", "readings_missing without a 'data' object")
    numbers = [data.get(k) for k in ("first", "last", "count")]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
        raise PayloadRejected("bad_event", "'first', 'last' and 'count' must be whole numbers")
    boot, where = data.get("boot", obj.get("boot", "")), data.get("where", "")
    if not isinstance(boot, str) or not isinstance(where, str) or len(boot + where) > 64:
        raise PayloadRejected("bad_event", "'boot' and 'where' must be short text")
    first, last, count = (int(n) for n in numbers)  # type: ignore[arg-type]
    return Gap(device, boot, first, last, count, where)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def chart_link(public_url: str, device: str, metric: str, since: float, now: float) -> str:
    query = {"device": device, "metric": metric, "since": f"{since - CHART_MARGIN_S:.0f}",
             "until": f"{now + CHART_MARGIN_S:.0f}"}  # fmt: skip
    return public_url.rstrip("/") + "/?" + urlencode({k: v for k, v in query.items() if v})


def record(change: Change, unit: str, public_url: str, now: float) -> dict[str, Any]:
    """The alert as stored, published on MQTT, pushed to the page and sent."""
    rule = change.rule
    value = change.value
    shown = "" if value is None else f"{value:g}{' ' + unit if unit else ''}"
    subject = " ".join(p for p in (change.device, change.metric, shown) if p)
    if change.state == "reported":
        subject = change.device
    what = change.detail or (f"({rule.threshold_text()})" if rule.threshold_text() else "")
    prefix = {"resolved": "resolved: ", "reminder": "still firing: "}.get(change.state, "")
    message = f"{prefix}{rule.name}: {subject} {what}".strip()
    return {
        "key": key_of(rule.name, change.device, change.metric),
        "ts": now,
        "rule": rule.name,
        "kind": rule.kind,
        "device": change.device,
        "metric": change.metric,
        "state": change.state,
        "value": value,
        "unit": unit,
        "threshold": rule.threshold_text(),
        "since": change.since,
        "message": message[:300],
        "link": chart_link(public_url, change.device, change.metric, change.since, now),
        "notified": change.notify,
    }


def notification(alert: dict[str, Any]) -> tuple[str, str]:
    """(title, body) of the notification a person receives."""
    state = str(alert["state"]).upper()
    title = f"[{state}] {alert['rule']}" + (f" — {alert['device']}" if alert["device"] else "")
    value = alert["value"]
    lines = [alert["message"]]
    if alert["device"]:
        lines.append(f"device: {alert['device']}")
    if alert["metric"]:
        lines.append(f"metric: {alert['metric']}")
    if value is not None:
        lines.append(f"value: {value:g} {alert['unit']}".rstrip())
    if alert["threshold"]:
        lines.append(f"threshold: {alert['threshold']}")
    lines.append(f"since: {_when(alert['since'])}")
    lines.append(f"chart: {alert['link']}")
    return title, "\n".join(lines)
