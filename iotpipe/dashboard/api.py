"""The JSON API: devices, series, chart figures, CSV export.

Input is checked by ``params`` before anything else runs; a bad value is a 400 and an
unknown device or metric a 404, each as ``{"error": "..."}`` (see ``app.py``).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator, Mapping
from typing import Any

from flask import Blueprint, Response, jsonify, request

from iotpipe.dashboard import export_rows, series
from iotpipe.dashboard.params import BadRequest, NotFound, device_id, metric_name, parse_range
from iotpipe.dashboard.services import current_services
from iotpipe.dashboard.store import DeviceRow
from iotpipe.durations import parse_duration

bp = Blueprint("api", __name__)
# A board is late when it has missed this many readings in a row, plus slack for clocks
# and the network. A bridge marks a silent serial board offline itself; a battery board on
# Wi-Fi leaves its status "online" while it sleeps, so lateness is what shows it is gone.
LATE_AFTER_INTERVALS = 3
LATE_SLACK_S = 5.0


def is_late(last_ts: float | None, interval_ms: object, now: float) -> bool:
    """True when readings stopped coming at the interval the board announced in its meta."""
    if last_ts is None or isinstance(interval_ms, bool) or not isinstance(interval_ms, int):
        return False
    return now - last_ts > LATE_AFTER_INTERVALS * interval_ms / 1000 + LATE_SLACK_S


def _device_json(row: DeviceRow, metrics: list[str], now: float) -> dict[str, Any]:
    meta = row.meta or {}
    return {
        "id": row.id,
        "status": row.status or "unknown",
        "late": is_late(row.last_ts, meta.get("interval_ms"), now),
        "last": {"ts": row.last_ts, "metrics": row.last} if row.last_ts is not None else None,
        "units": {**{m: "" for m in metrics}, **meta.get("units", {})},
        "metrics": metrics,
        "meta": meta,
    }


def _known_device(device: str) -> DeviceRow:
    device = device_id(device)
    for row in current_services().store.devices():
        if row.id == device:
            return row
    raise NotFound(f"no device {device!r}")


@bp.get("/api/devices")
def devices() -> Response:
    store = current_services().store
    now = time.time()
    return jsonify([_device_json(row, store.metrics(row.id), now) for row in store.devices()])


@bp.get("/api/devices/<device>/series")
def device_series(device: str) -> Response:
    row = _known_device(device)
    store = current_services().store
    metric = metric_name(request.args, store.metrics(row.id))
    rng = parse_range(request.args)
    found = series.query(store, row.id, metric, rng.since, rng.until, rng.points)
    return jsonify({"t": found.t, "v": found.v, "source": found.source})


@bp.get("/api/charts/<metric>")
def chart(metric: str) -> Response:
    """One figure for ``metric`` with a trace per device that has it (or those named)."""
    store = current_services().store
    rows = store.devices()
    wanted = request.args.get("devices")
    names = set(wanted.split(",")) if wanted else None
    having = [r for r in rows if metric in store.metrics(r.id) and (not names or r.id in names)]
    if not having:
        raise NotFound(f"no device has a metric {metric[:40]!r}")
    rng = parse_range(request.args)
    traces = {
        r.id: series.query(store, r.id, metric, rng.since, rng.until, rng.points) for r in having
    }
    unit = next(((r.meta or {}).get("units", {}).get(metric, "") for r in having), "")
    from iotpipe.dashboard.figures import metric_figure  # plotly: only when a chart is asked

    return Response(metric_figure(metric, unit, traces), mimetype="application/json")


@bp.get("/api/devices/<device>/export.csv")
def export_csv(device: str) -> Response:
    """Every raw sample in the range, streamed in batches so a year never sits in memory."""
    row = _known_device(device)
    store = current_services().store
    metrics = store.metrics(row.id)
    chosen = [request.args["metric"]] if request.args.get("metric") else metrics
    for m in chosen:
        metric_name({"metric": m}, metrics)
    # The whole history unless a range is given.
    rng = parse_range({**request.args.to_dict(), "since": request.args.get("since") or "0"})
    since, until = rng.since, rng.until

    def rows() -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(export_rows.COLUMNS)
        for n, fields in enumerate(export_rows.rows(store, row.id, chosen, since, until), 1):
            writer.writerow(export_rows.csv_fields(fields))
            if n % export_rows.BATCH == 0:
                yield out.getvalue()
                out.seek(0)
                out.truncate()
        yield out.getvalue()

    headers = {"Content-Disposition": f'attachment; filename="{row.id}.csv"'}
    return Response(rows(), mimetype="text/csv", headers=headers)


@bp.post("/api/devices/<device>/commands")
def command(device: str) -> Response | tuple[Response, int]:
    """Send a command to the board through the bridge and return its answer."""
    from iotpipe.dashboard.board_requests import Busy, NoAnswer, parse_request

    row = _known_device(device)
    s = current_services()
    body = request.get_json(silent=True)
    cmd = parse_request(body)
    if s.board_requests is None or not s.mqtt_connected():
        return jsonify({"error": "not connected to the MQTT broker; try again shortly"}), 503
    try:
        answer = s.board_requests.request(row.id, cmd, s.command_timeout)
    except NoAnswer as exc:
        return jsonify({"error": str(exc)}), 504
    except Busy as exc:
        return jsonify({"error": str(exc)}), 503
    return jsonify(answer)


@bp.get("/api/alerts")
def alerts() -> Response:
    """Alert history, newest first, a page at a time: ``?before=ID`` from the last id of the
    previous page; or ``?after=ID`` for what came since, oldest first."""
    s = current_services()
    limit = _whole(request.args, "limit", 100)
    if s.alerts is None:
        return jsonify([])
    if "after" in request.args:
        return jsonify(s.alerts.since(_whole(request.args, "after", 0), limit))
    before = _whole(request.args, "before", 0) if "before" in request.args else None
    return jsonify(s.alerts.history(before, limit))


@bp.get("/api/alerts/firing")
def alerts_firing() -> Response:
    """What fires now, the destinations' health and whether the rules file was refused."""
    s = current_services()
    if s.alerts is None:
        return jsonify({"firing": [], "destinations": [], "rules": 0, "rules_error": None})
    return jsonify(s.alerts.overview())


@bp.post("/api/alerts/ack")
def alerts_ack() -> Response | tuple[Response, int]:
    """No more reminders for a firing alert (``{"key": …}`` from /api/alerts/firing)."""
    key = _alert_key(request.get_json(silent=True))
    s = current_services()
    if s.alerts is None or not s.alerts.acknowledge(key):
        raise NotFound("no alert fires under that key")
    return jsonify({"key": key, "acked": True})


@bp.post("/api/alerts/silence")
def alerts_silence() -> Response | tuple[Response, int]:
    """No notifications of a firing alert for a time: ``{"key": …, "for": "1h"}``."""
    body = request.get_json(silent=True)
    key = _alert_key(body)
    try:
        seconds = parse_duration(str(body.get("for", "1h")))  # type: ignore[union-attr]
    except ValueError as exc:
        raise BadRequest(f"'for': {exc}") from None
    s = current_services()
    if s.alerts is None or not s.alerts.silence(key, seconds):
        raise NotFound("no alert fires under that key")
    return jsonify({"key": key, "silenced_for": seconds})


def _alert_key(body: object) -> str:
    key = body.get("key") if isinstance(body, dict) else None
    if not isinstance(key, str) or not 0 < len(key) <= 300:
        raise BadRequest("send a JSON object with the alert's 'key'")
    return key


def _whole(args: Mapping[str, str], name: str, default: int) -> int:
    text = args.get(name)
    if text is None:
        return default
    if not text.isdigit() or len(text) > 18:
        raise BadRequest(f"{name!r} must be a whole number")
    return int(text)
