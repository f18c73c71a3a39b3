"""Operational endpoints: ``/healthz``, ``/metrics`` (Prometheus text), ``/api/openapi.json``."""

from __future__ import annotations

import json
from pathlib import Path

from flask import Blueprint, Response, jsonify

from iotpipe.dashboard.metrics import dashboard_registry
from iotpipe.dashboard.services import current_services
from iotpipe.exposition import CONTENT_TYPE, render

bp = Blueprint("ops", __name__)
OPENAPI = Path(__file__).parent / "static" / "openapi.json"


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 while the store can write; 503 with the reason while it cannot (readings then
    wait in the broker). History stays readable while the broker is away, so MQTT state is
    reported, not made a failure. ``subscribed`` is what a first start waits on: from then
    on the broker keeps every reading for this dashboard."""
    s = current_services()
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
    """Prometheus text format, by prometheus_client (iotpipe/dashboard/metrics.py)."""
    return Response(render(dashboard_registry(current_services())), content_type=CONTENT_TYPE)


@bp.get("/api/openapi.json")
def openapi() -> Response:
    return Response(json.dumps(json.loads(OPENAPI.read_text())), mimetype="application/json")
