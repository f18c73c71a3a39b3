"""The dashboard's Prometheus metrics: its counters and gauges, and each device's latest
reading as a labelled gauge (``iotpipe_device_reading{device,metric,unit}``) that
Grafana can chart. ``COUNTERS`` declares every counter the dashboard keeps, so a scrape
shows each at zero before its first event (tests/test_metrics.py checks that the code
counts no other).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from iotpipe.dashboard.services import Services
from iotpipe.dashboard.store import DeviceRow
from iotpipe.exposition import CountersCollector, Declared, Gauge, GaugesCollector, registry

COUNTERS: Mapping[str, Declared] = {
    "received": Declared("Valid readings received from the broker"),
    "stored": Declared("Readings written to the history store"),
    "duplicates": Declared("Readings received again (same device, boot and seq), not stored"),
    "batches": Declared("Write transactions of the history store"),
    "pruned": Declared("Readings removed by retention"),
    "rejected": Declared("Messages refused, by reason", labelled=True),
    "store_errors": Declared(
        "Store writes that failed and will be retried, by reason", labelled=True
    ),
    "flagged": Declared("Readings stored with a flag, by reason", ("seq_backwards",)),
    "alerts": Declared("Alert changes, by state", ("firing", "resolved", "reminder", "reported")),
    "alert_sent": Declared("Notifications delivered"),
    "alert_failed": Declared("Notification attempts that failed", ("retrying", "gave_up")),
    "alert_dropped": Declared("Notifications not queued, by reason", ("queue_full",)),
    "alert_store_failed": Declared("Alert history or state the store could not save"),
    "alert_rules_loaded": Declared("Times an alert rules file was loaded"),
    "alert_rules_rejected": Declared("Alert rules files refused (the running rules stay)"),
    "connect_failed": Declared("Failed attempts to connect to the broker"),
    "publish_errors": Declared("Publishes paho-mqtt refused, by its error", labelled=True),
    "subscriptions_refused": Declared("Subscriptions the broker refused"),
    "handler_errors": Declared("Messages from the broker whose handler failed"),
    "sessions_lost": Declared(
        "Reconnects that found the broker had forgotten our session: readings may be missing"
    ),
    "commands_answered": Declared("Commands sent from the page that got their answer"),
    "command_timeouts": Declared("Commands sent from the page that got no answer in time"),
    "sse_dropped": Declared("Live events a slow page did not get, by event", labelled=True),
    "sse_refused": Declared("Live streams refused because too many were open"),
}

GAUGE_HELP: Mapping[str, str] = {
    "writer_queue": "Readings waiting for the history store",
    "alert_queue": "Notifications waiting to be sent",
    "store_cannot_write": "1 while the history store cannot write (readings wait in the broker)",
}


class DevicesCollector:
    """Reads the store at each scrape: one query, as ``/api/devices`` does."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterable[Metric]:
        reading = GaugeMetricFamily(
            "iotpipe_device_reading",
            "Latest value of each device's metric, in the unit the board announced",
            labels=["device", "metric", "unit"],
        )
        seen = GaugeMetricFamily(
            "iotpipe_device_last_reading_timestamp_seconds",
            "Time of each device's latest reading, as the bridge stamped it (Unix time)",
            labels=["device"],
        )
        online = GaugeMetricFamily(
            "iotpipe_device_online",
            "Whether the device is online (1) or offline (0), as its status topic says",
            labels=["device"],
        )
        for row in self.services.store.devices():
            for metric, value, unit in _latest(row):
                reading.add_metric([row.id, metric, unit], value)
            if row.last_ts is not None:
                seen.add_metric([row.id], row.last_ts)
            if row.status in ("online", "offline"):
                online.add_metric([row.id], float(row.status == "online"))
        yield from (reading, seen, online)


def _latest(row: DeviceRow) -> Iterable[tuple[str, float, str]]:
    units = (row.meta or {}).get("units", {})
    for metric, value in sorted(row.last.items()):
        if isinstance(value, int | float) and not isinstance(value, bool):
            unit = units.get(metric, "") if isinstance(units, dict) else ""
            yield metric, float(value), unit if isinstance(unit, str) else ""


def _reader(s: Services, name: str) -> Callable[[], float]:
    return lambda: s.gauges().get(name, 0.0)


def dashboard_registry(s: Services) -> CollectorRegistry:
    prefix = s.counters.prefix
    gauges = {
        name: Gauge(GAUGE_HELP.get(name, f"{name} (not described yet)"), _reader(s, name))
        for name in s.gauges()
    }
    gauges["sse_clients"] = Gauge("Live streams (open pages) now", lambda: s.hub.clients)
    gauges["mqtt_connected"] = Gauge(
        "Whether the dashboard is connected to the broker (1 or 0)",
        lambda: float(s.mqtt_connected()),
    )
    return registry(
        "dashboard",
        CountersCollector(s.counters, COUNTERS),
        GaugesCollector(prefix, gauges),
        DevicesCollector(s),
    )
