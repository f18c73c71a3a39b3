"""The dashboard's composition root: every part built from the settings, wired, started,
served and stopped — the one place that knows them all, as ``create_app`` (``app.py``) is
the one place that puts the web app together.

Data flow: MQTT message → ``Ingest`` (validate) → ``Writer`` queue → store (one batch,
one transaction) → ``Fanout`` → live hub (SSE) and alert rules. What the dashboard
publishes (alerts, requests to boards) leaves through ``Outputs``, a connection of its own.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from flask import Flask

from iotpipe.counters import Counters
from iotpipe.dashboard.alert_store import AlertStore
from iotpipe.dashboard.alerts import Alerts
from iotpipe.dashboard.app import create_app
from iotpipe.dashboard.auth import load_token, write_login_url
from iotpipe.dashboard.board_requests import BoardRequests
from iotpipe.dashboard.fanout import Fanout
from iotpipe.dashboard.ingest import Ingest
from iotpipe.dashboard.live import Hub
from iotpipe.dashboard.notify import Notifier
from iotpipe.dashboard.outputs import Outputs
from iotpipe.dashboard.server import serve, stream_limit
from iotpipe.dashboard.services import Services
from iotpipe.dashboard.store import Store, open_store
from iotpipe.dashboard.writer import Retention, Writer
from iotpipe.errors import UserError
from iotpipe.mqttlogin import fill_credentials
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
        fanout = Fanout(hub)
        writer = Writer(store, counters, Retention(args.retention, args.history), fanout)
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
        alerts = fanout.alerts = Alerts(
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
        login_url = write_login_url(Path(args.data), args.http.url, token)
        log.info("to send commands, log in once at the URL in %s", login_url)
        app = create_app(services, token)
        return cls(store, writer, ingest, outputs, hub, counters, app, alerts)

    def start(self) -> None:
        threading.Thread(target=_warm_figures, name="warm-figures", daemon=True).start()
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


def run(args: argparse.Namespace) -> None:
    """The dashboard process, until SIGTERM or SIGINT; SIGHUP reloads the alert rules."""
    dashboard = Dashboard.from_args(args)
    signal.signal(signal.SIGHUP, lambda _sig, _frame: dashboard.alerts.request_reload())
    dashboard.start()
    try:
        serve(dashboard.app, args.http, args.http_threads, dashboard.hub.close)
    finally:
        dashboard.stop()


def _warm_figures() -> None:
    """plotly takes a second to import and set up on a small machine: done aside at start,
    not in the first page's first chart request."""
    from iotpipe.dashboard.figures import warm_up

    warm_up()
