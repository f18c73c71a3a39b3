"""The running dashboard: store, writer, MQTT ingest, live hub and the Flask app, wired.

Data flow: MQTT message → ``Ingest`` (validate) → ``Writer`` queue → store (one batch,
one transaction) → ``announce`` → live hub (SSE) and alert rules. What the dashboard
publishes (alerts, requests to boards) leaves through ``Outputs``, a connection of its own.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask

from iotpipe.counters import Counters
from iotpipe.dashboard.alert_store import AlertStore
from iotpipe.dashboard.alerts import Alerts
from iotpipe.dashboard.app import create_app
from iotpipe.dashboard.auth import load_token
from iotpipe.dashboard.board_requests import BoardRequests
from iotpipe.dashboard.ingest import Ingest
from iotpipe.dashboard.live import Hub
from iotpipe.dashboard.notify import Notifier
from iotpipe.dashboard.outputs import Outputs
from iotpipe.dashboard.payloads import MetaUpdate, StatusUpdate
from iotpipe.dashboard.server import stream_limit
from iotpipe.dashboard.services import Services
from iotpipe.dashboard.store import Store, open_store
from iotpipe.dashboard.writer import Item, Retention, Writer
from iotpipe.errors import UserError
from iotpipe.mqttlogin import fill_credentials
from iotpipe.topics import Telemetry
from iotpipe.transport import Login

log = logging.getLogger(__name__)


def client_id(data: Path, share_group: str | None) -> str:
    """Stable for one data directory, so the broker resumes our session after a restart."""
    digest = hashlib.sha256(str(data.resolve()).encode()).hexdigest()[:12]
    return f"iotpipe-dashboard-{digest}" + (f"-{share_group}" if share_group else "")


def _open(location: str | Path) -> Store:
    """The store, or a one-line reason it cannot be opened (never a traceback)."""
    try:
        return open_store(location)
    except OSError as exc:
        raise UserError(f"cannot open the history store: {exc} — check --data") from None
    except Exception as exc:  # the database driver's own errors, e.g. a refused connection
        if type(exc).__module__.split(".")[0] not in ("psycopg", "sqlite3"):
            raise
        message = str(exc).strip().splitlines()[0]
        raise UserError(f"cannot open the history store: {message} — check --store") from None


def write_private(path: Path, text: str) -> None:
    """``text`` into ``path``, readable by its owner only (also when it existed before)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def reading_event(r: Telemetry) -> dict[str, Any]:
    return {"device": r.device, "ts": r.ts, "seq": r.seq, "metrics": r.metrics}


@dataclass
class Dashboard:
    store: Store
    writer: Writer
    ingest: Ingest
    outputs: Outputs
    hub: Hub
    counters: Counters
    app: Flask
    alerts: Alerts

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Dashboard:
        counters = Counters("iotpipe_dashboard")
        store = _open(args.store or args.data)
        hub = Hub(counters, stream_limit(args.http_threads))
        announce = _Announcer(hub)
        writer = Writer(store, counters, Retention(args.retention, args.history), announce)
        ident = client_id(args.data, args.share_group)
        fill_credentials(args, "dashboard")
        login = Login(
            args.broker, args.mqtt_user, args.mqtt_password, args.mqtt_ca, args.mqtt_cert,
            args.mqtt_key,
        )  # fmt: skip
        ingest = Ingest(login, args.base_topic, ident, writer.put, counters, args.share_group)
        writer.ack = ingest.ack
        outputs = Outputs(login, f"{ident}-out", counters)
        board_requests = BoardRequests(outputs, args.base_topic, ident, counters)
        alerts = announce.alerts = Alerts(
            args.alerts,
            args.base_topic,
            AlertStore.beside(store),
            Notifier(counters, args.alert_retry),
            counters,
            args.public_url or args.http.url,
            outputs.publish,
            lambda alert: hub.publish("alert", alert),
        )
        writer.on_health = alerts.store_state
        ingest.on_event(alerts.on_event)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGHUP, lambda _sig, _frame: alerts.request_reload())
        services = Services(
            store,
            hub,
            counters,
            mqtt_connected=ingest.connected.is_set,
            gauges=lambda: {
                "writer_queue": writer.queue.qsize(),
                "alert_queue": alerts.notifier.pending(),
                "store_cannot_write": 0 if writer.health.ok else 1,
            },
            store_health=lambda: writer.health,
            subscribed=ingest.subscribed.is_set,
            board_requests=board_requests,
            command_timeout=args.command_timeout,
            alerts=alerts,
        )
        token = load_token(Path(args.data))
        # The URL holds the token: into a file only its owner reads, never into the log
        # (a journal or a log file may be readable by others).
        login_url = Path(args.data) / "login-url"
        write_private(login_url, f"{args.http.url}login?token={token}\n")
        log.info("to send commands, log in once at the URL in %s", login_url)
        app = create_app(services, token)
        return cls(store, writer, ingest, outputs, hub, counters, app, alerts)

    def start(self) -> None:
        self.alerts.start(self.store.devices())
        self.writer.start()
        self.outputs.start()
        self.ingest.start()

    def stop(self) -> None:
        # The writer first, while connected: what it commits is acknowledged before we go.
        self.writer.stop()
        self.ingest.stop()
        self.hub.close()
        self.alerts.stop()
        self.outputs.stop()  # after the alerts: the last ones still go out
        self.store.close()


class _Announcer:
    """Tells the live hub and the alert rules about what the writer has just stored."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.alerts: Alerts | None = None

    def __call__(self, items: list[Item]) -> None:
        for item in items:
            if isinstance(item, Telemetry):
                if self.hub.clients:  # no page open: no need to encode the event
                    self.hub.publish("reading", reading_event(item))
                if self.alerts is not None and self.alerts.rules.rules:
                    self.alerts.check(item)
            elif isinstance(item, StatusUpdate):
                self.hub.publish("status", {"device": item.device, "status": item.status})
                if self.alerts is not None:
                    self.alerts.status(item.device, item.status)
            elif isinstance(item, MetaUpdate):
                self.hub.publish("meta", {"device": item.device, **item.meta})
                if self.alerts is not None:
                    self.alerts.meta(item.device, item.meta)
