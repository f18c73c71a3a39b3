"""Everything the dashboard publishes leaves here: alerts and requests to boards, with the
answers to those requests coming back on the same connection.

A session of its own (``iotpipe.transport``, MQTT 5 for the request/response properties,
no persistent session: a request outlives no restart), on paho's own network thread:
publishing is rare and comes from any thread (the writer's alerts, HTTP requests), and
paho's ``publish`` is safe to call from any of them. The ingest's connection stays the
readings' alone, so its acknowledgements never queue behind an alert, and whatever
protocol suits ingest best is free to choose. A failed publish is logged and counted
(``publish_errors``), never raised.
"""

from __future__ import annotations

import logging

from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from iotpipe.counters import Counters
from iotpipe.transport import Handler, Login, Options, Session

log = logging.getLogger(__name__)


class Outputs:
    def __init__(self, login: Login, client_id: str, counters: Counters) -> None:
        self.session = Session(Options(login), client_id, counters)
        self.session.on_up = lambda present: log.info("publishing to %s", login.broker)
        self.session.on_refused = self._refused
        self.connected = self.session.connected

    def handle(self, topic_filter: str, handler: Handler) -> None:
        self.session.handle(topic_filter, handler)

    def publish(self, topic: str, payload: bytes, properties: Properties | None = None) -> bool:
        """QoS 1; False when paho refused it (logged and counted)."""
        return self.session.publish(topic, payload, 1, False, properties) is not None

    def start(self) -> None:
        self.session.start_thread()

    def stop(self) -> None:
        self.session.stop_thread()

    def _refused(self, reason: ReasonCode) -> None:
        log.warning("broker %s refused the dashboard's publishing login: %s",
                    self.session.broker, reason)  # fmt: skip
