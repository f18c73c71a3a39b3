"""An optional Prometheus endpoint: ``GET /metrics``, rendered by prometheus_client.

``COUNTERS`` declares every counter the bridge keeps, so a scrape shows each at zero
before its first event (tests/test_metrics.py checks that the code counts no other).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry

from iotpipe.bridge.statelog import changed
from iotpipe.counters import Counters
from iotpipe.endpoints import HostPort
from iotpipe.exposition import (
    CONTENT_TYPE,
    CountersCollector,
    Declared,
    Gauge,
    GaugesCollector,
    registry,
    render,
)

log = logging.getLogger(__name__)

COUNTERS: Mapping[str, Declared] = {
    "lines": Declared("Lines read from the serial port"),
    "accepted": Declared("Valid protocol lines, by line type", ("reading",), labelled=True),
    "rejected": Declared("Lines that are not valid protocol, by reason", labelled=True),
    "published": Declared("Messages the broker acknowledged (or sent at QoS 0)"),
    "spooled": Declared("Readings written to the on-disk spool"),
    "replayed": Declared("Spooled readings sent again after a reconnect"),
    "dropped": Declared("Messages lost, by reason", ("not_connected", "spool_full")),
    "connects": Declared("Connections to the broker made"),
    "disconnects": Declared("Connections to the broker lost"),
    "publish_errors": Declared("Publishes paho-mqtt refused, by its error", labelled=True),
    "refused_by_broker": Declared("Publishes the broker refused, by reason code", labelled=True),
    "subscriptions_refused": Declared("Subscriptions the broker refused"),
    "handler_errors": Declared("Messages from the broker whose handler failed"),
    "port_opens": Declared("Times the serial port was opened"),
    "port_errors": Declared("Serial port failures, by operation", ("open", "read")),
    "link_errors": Declared("Bugs one port's data tripped (logged; the other ports go on)"),
    "commands": Declared("Commands received over MQTT and sent to the board"),
    "commands_rejected": Declared("Commands refused before the board, by reason", labelled=True),
    "command_answers": Declared("Board answers matched to a pending command"),
    "command_timeouts": Declared("Commands the board did not answer in time"),
    "answers_unmatched": Declared("Board answers with no pending command"),
    "gaps": Declared("Gaps detected in a board's reading sequence numbers"),
    "missing": Declared("Readings missing in those gaps"),
    "duplicates": Declared(
        "Readings seen again and not stored, by verdict", ("duplicate", "conflict")
    ),
    "conflicts": Declared("Readings seen again with other values (the first copy is kept)"),
    "not_stored": Declared("Readings the spool could not store, by reason", labelled=True),
    "spool_errors": Declared("Spool writes that failed, by reason", labelled=True),
    "spool_damaged": Declared("Damaged spool files kept aside and started anew"),
    "replays_asked": Declared("Replays of recent readings asked of the board"),
    "replays_answered": Declared("Replays the board answered"),
    "replays_failed": Declared("Replays that failed, by reason", labelled=True),
    "replayed_by_board": Declared("Readings the board sent again in a replay"),
}


def bridge_registry(counters: Counters, gauges: Mapping[str, Gauge]) -> CollectorRegistry:
    return registry(
        "bridge",
        CountersCollector(counters, COUNTERS),
        GaugesCollector(counters.prefix, gauges),
    )


class MetricsServer:
    """Serves ``registry`` in the text format; runs on its own daemon thread."""

    def __init__(self, where: HostPort, registry: CollectorRegistry) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics here")
                    return
                body = render(registry)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("metrics: " + format, *args)

        self.server = ThreadingHTTPServer((where.host, where.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()
        host, port = self.server.server_address[:2]
        changed(log, "metrics_serving", url=f"http://{host!s}:{port}/metrics")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
