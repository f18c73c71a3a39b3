"""``<base>/<device>/alert``: each alert the dashboard fires, resolves, reminds of or
reports (docs/alerts.md), the record it also keeps and pushes to the page. Built by the
dashboard's alerts (``iotpipe/dashboard/alert_text.py`` says what it holds); read by
anybody's scripts, and by the vectors' test.

Written as plain ``json.dumps`` (spaces, non-ASCII escaped), as the dashboard always
wrote it; ``id`` is the record's id in the dashboard's history, null when the store
could not keep it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from iotpipe.topics import PayloadRejected, json_object

STATES = ("firing", "resolved", "reminder", "reported")
TEXT = ("key", "rule", "kind", "device", "metric", "state", "unit", "threshold", "message", "link")
ORDER = (
    "key", "ts", "rule", "kind", "device", "metric", "state", "value", "unit",
    "threshold", "since", "message", "link", "notified", "id",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Alert:
    key: str
    ts: float
    rule: str
    kind: str
    device: str
    metric: str
    state: str
    value: float | None
    unit: str
    threshold: str
    since: float
    message: str
    link: str
    notified: bool
    id: int | None


def encode_alert(record: Mapping[str, Any]) -> bytes:
    """The record with exactly the contract's members, in its order."""
    if set(record) != set(ORDER):
        raise ValueError(f"an alert has exactly the members {ORDER}, not {sorted(record)}")
    return json.dumps({name: record[name] for name in ORDER}).encode()


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_alert(payload: bytes) -> Alert:
    obj = json_object(payload)
    missing = [name for name in ORDER if name not in obj]
    if missing:
        raise PayloadRejected("bad_alert", f"no {', '.join(missing)}")
    if not all(isinstance(obj[name], str) for name in TEXT) or obj["state"] not in STATES:
        raise PayloadRejected("bad_alert", f"text members must be text, 'state' one of {STATES}")
    value, alert_id = obj["value"], obj["id"]
    if not (_number(obj["ts"]) and _number(obj["since"]) and (value is None or _number(value))):
        raise PayloadRejected("bad_alert", "'ts', 'since' and 'value' must be numbers")
    if not isinstance(obj["notified"], bool) or not (
        alert_id is None or (isinstance(alert_id, int) and not isinstance(alert_id, bool))
    ):
        raise PayloadRejected("bad_alert", "'notified' must be true or false, 'id' a number")
    members = {name: obj[name] for name in ORDER}  # members of a later release are left
    numbers = {name: float(obj[name]) for name in ("ts", "since")}
    return Alert(**{**members, **numbers, "value": None if value is None else float(value)})
