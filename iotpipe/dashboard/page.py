"""``GET /``: the page itself; its scripts and styles are ``assets.py``'s."""

from __future__ import annotations

from flask import Blueprint, Response, render_template

from iotpipe.dashboard.services import current_services

bp = Blueprint("page", __name__)


@bp.get("/")
def index() -> Response:
    """Small and never cached: it names the versioned assets (assets.py), which are. It
    also names the charts, so the page asks for them before plotly.js has even compiled."""
    store = current_services().store
    rows = store.devices()
    metrics = sorted({m for row in rows for m in store.metrics(row.id)})
    body = render_template("index.html", metrics=" ".join(metrics), devices=len(rows))
    return Response(body, headers={"Cache-Control": "no-cache"})
