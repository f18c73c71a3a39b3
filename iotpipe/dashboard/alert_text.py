"""What an alert says: the stored/announced record, its one-line message, and the
notification's title and body (device, metric, value, unit, threshold, since, chart link).

The record's members and how it is written on MQTT are the contract's
(``iotpipe/mqttwire/alert.py``); gap reports are parsed by ``iotpipe/mqttwire/event.py``.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from iotpipe.dashboard.alert_engine import Change, key_of

CHART_MARGIN_S = 1800.0
"""The chart link shows this much before the alert began and after it was sent."""


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
