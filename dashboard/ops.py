"""Operational endpoints: ``/healthz``, ``/metrics`` (Prometheus text), ``/api/openapi.json``."""

from __future__ import annotations

import json
from pathlib import Path

from flask import Blueprint, Response, jsonify
from iotpipe.dashboard.api import services
from iotpipe.dashboard.metrics import dashboard_registry

from iotpipe.exposition import CONTENT_TYPE, render

bp = Blueprint("ops", __name__)
OPENAPI = Path(__file__).parent / "static" / "openapi.json"


@bp.get("/healthz")
def healthz() -> Response:
    """200 whenever the dashboard serves: history stays readable while the broker is away,
    so MQTT state is reported, not made a failure."""
    s = services()
    return jsonify({"ok": True, "mqtt_connected": s.mqtt_connected(), "streams": s.hub.clients})


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format, by prometheus_client (dashboard/metrics.py)."""
    return Response(render(dashboard_registry(services())), content_type=CONTENT_TYPE)


@bp.get("/api/openapi.json")
def openapi() -> Response:
    return Response(json.dumps(json.loads(OPENAPI.read_text())), mimetype="application/json")
