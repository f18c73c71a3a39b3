"""Operational endpoints: ``/healthz``, ``/metrics`` (Prometheus text), ``/api/openapi.json``."""

from __future__ import annotations

import json
from pathlib import Path

from flask import Blueprint, Response, jsonify
from iotpipe.dashboard.api import services

bp = Blueprint("ops", __name__)
OPENAPI = Path(__file__).parent / "static" / "openapi.json"


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 while the store can write; 503 with the reason while it cannot (readings then
    wait in the broker). History stays readable while the broker is away, so MQTT state is
    reported, not made a failure. ``subscribed`` is what a first start waits on: from then
    on the broker keeps every reading for this dashboard."""
    s = services()
    health = s.store_health()
    body = {
        "ok": health.ok,
        "store": health.state,
        "mqtt_connected": s.mqtt_connected(),
        "subscribed": s.subscribed(),
        "streams": s.hub.clients,
    }
    if not health.ok:
        body["reason"] = health.reason
        body["since"] = health.since
    return jsonify(body), 200 if health.ok else 503


@bp.get("/metrics")
def metrics() -> Response:
    s = services()
    lines = [s.counters.prometheus().rstrip("\n")]
    for name, value in sorted(s.gauges().items()):
        lines.append(f"{s.counters.prefix}_{name} {value:g}")
    lines.append(f"{s.counters.prefix}_sse_clients {s.hub.clients}")
    lines.append(f"{s.counters.prefix}_mqtt_connected {int(s.mqtt_connected())}")
    return Response("\n".join(line for line in lines if line) + "\n", mimetype="text/plain")


@bp.get("/api/openapi.json")
def openapi() -> Response:
    return Response(json.dumps(json.loads(OPENAPI.read_text())), mimetype="application/json")
