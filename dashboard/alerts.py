"""Threshold alerts: rules from a TOML file, checked against every stored reading.

A rule fires when a value crosses its threshold and resolves when it comes back, once
each, not on every reading in between. Each crossing is published to
``<base>/<device>/alert`` (QoS 1) and pushed to the page. The file looks like::

    [[rule]]
    name = "greenhouse too hot"      # optional; shown on the page
    device = "*"                     # a device id, or "*" for every device
    metric = "temperature"
    above = 35.0                     # above and/or below
    below = 2.0
"""

from __future__ import annotations

import json
import logging
import math
import threading
import tomllib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotpipe import topics
from iotpipe.errors import UserError
from iotpipe.wire import DEVICE_ID_RE, METRIC_RE

log = logging.getLogger(__name__)
RECENT = 100


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    device: str
    metric: str
    above: float | None
    below: float | None

    def breached(self, value: float) -> bool:
        return (self.above is not None and value > self.above) or (
            self.below is not None and value < self.below
        )


def _threshold(raw: dict[str, Any], key: str, where: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserError(f"{where}: {key!r} must be a number")
    return float(value)


def _rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a table")
    unknown = set(raw) - {"name", "device", "metric", "above", "below"}
    if unknown:
        raise UserError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    device, metric = raw.get("device", "*"), raw.get("metric")
    if not isinstance(device, str) or not (device == "*" or DEVICE_ID_RE.fullmatch(device)):
        raise UserError(f"{where}: 'device' must be a device id or \"*\"")
    if not isinstance(metric, str) or not METRIC_RE.fullmatch(metric):
        raise UserError(f"{where}: 'metric' must be a metric name such as \"temperature\"")
    above, below = _threshold(raw, "above", where), _threshold(raw, "below", where)
    if above is None and below is None:
        raise UserError(f"{where}: give 'above', 'below' or both")
    name = raw.get("name", f"{metric} {'>' if above is not None else '<'} {above or below}")
    return Rule(str(name)[:80], device, metric, above, below)


def load_rules(path: Path) -> list[Rule]:
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"cannot read alert rules {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"alert rules {path} are not valid TOML: {exc}") from None
    rules = doc.get("rule", [])
    if not isinstance(rules, list):
        raise UserError(f"{path}: rules are written as [[rule]] tables")
    return [_rule(raw, f"{path} rule {i + 1}") for i, raw in enumerate(rules)]


class Alerts:
    def __init__(
        self,
        rules: list[Rule],
        base: str,
        publish: Callable[[str, bytes], None],
        announce: Callable[[dict[str, Any]], None],
    ) -> None:
        self.rules = rules
        self.base = base
        self.publish = publish
        self.announce = announce
        self._firing: set[tuple[str, str, str]] = set()
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self._lock = threading.Lock()

    def check(self, r: topics.Telemetry) -> None:
        for rule in self.rules:
            value = r.metrics.get(rule.metric)
            if value is None or rule.device not in ("*", r.device):
                continue
            key = (rule.name, r.device, rule.metric)
            breached = rule.breached(value)
            if breached == (key in self._firing):
                continue
            (self._firing.add if breached else self._firing.discard)(key)
            self._emit(rule, r, value, "firing" if breached else "resolved")

    def _emit(self, rule: Rule, r: topics.Telemetry, value: float, state: str) -> None:
        limit = rule.above if rule.above is not None and value > rule.above else rule.below
        word = {"firing": "crossed", "resolved": "back within"}[state]
        alert = {
            "device": r.device,
            "metric": rule.metric,
            "value": value,
            "ts": r.ts,
            "rule": rule.name,
            "state": state,
            "message": f"{rule.name}: {value:g} {word} {limit if state == 'firing' else 'limits'}",
        }
        with self._lock:
            self._recent.appendleft(alert)
        log.info("alert %s: %s %s", state, r.device, alert["message"])
        self.publish(topics.topic(self.base, r.device, "alert"), json.dumps(alert).encode())
        self.announce(alert)

    def recent(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._recent)
