"""``GET /api/stream``: Server-Sent Events, one per stored reading, status or alert.

Each stream holds one server thread for as long as the browser keeps it open, which is
why the server is started with a thread pool sized for the streams (see ``server.py``)
and why the number of streams is capped: past the cap a client gets a 503 and its
EventSource tries again a moment later.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from iotpipe.dashboard.live import TooManyClients
from iotpipe.dashboard.services import current_services

bp = Blueprint("stream", __name__)


@bp.get("/api/stream")
def live() -> Response | tuple[Response, int]:
    hub = current_services().hub
    try:
        q = hub.subscribe()
    except TooManyClients as exc:
        current_services().counters.inc("sse_refused")
        return jsonify({"error": str(exc)}), 503
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(hub.stream(q), mimetype="text/event-stream", headers=headers)
