"""MQTT ingest: subscribe, validate each message where it enters, hand it to the writer.

paho-mqtt 2.x, MQTT 5, QoS 1 and a persistent session (``clean_start`` false, a long
session expiry, a client id stable for the data directory), so readings published while
the dashboard restarts wait in the broker instead of being lost. paho reconnects on its
own with backoff, and keeps retrying when the broker is not there at start-up; the HTTP
side serves history meanwhile. A malformed message is counted by reason and logged at
DEBUG (a flood of garbage must not flood the log), never raised.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from iotpipe.dashboard import fasttelemetry
from iotpipe.dashboard.mqttclient import BufferedClient
from iotpipe.dashboard.payloads import parse_meta, parse_status
from iotpipe.dashboard.writer import Item
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from iotpipe import topics
from iotpipe.counters import Counters
from iotpipe.endpoints import BrokerURL

log = logging.getLogger(__name__)

KEEPALIVE_S = 30
SESSION_EXPIRY_S = 7 * 24 * 3600
"""How long the broker keeps our subscriptions and queued readings while we are away."""
TOPIC_CACHE = 10_000
"""Topics already split into (device, kind): every reading of a device has the same one."""


class Ingest:
    def __init__(
        self,
        broker: BrokerURL,
        base: str,
        client_id: str,
        sink: Callable[[Item], None],
        counters: Counters,
        share_group: str | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self.broker = broker
        self.base = base
        self.sink = sink
        self.counters = counters
        self.share_group = share_group
        # Set once the broker has granted the subscriptions (SUBACK), not at CONNACK: from
        # then on the persistent session keeps every reading for us, which is what
        # /healthz's mqtt_connected, and so compose's start order, rely on.
        self.connected = threading.Event()
        self._subscribe_mid: int | None = None
        self._stopping = False
        self.extra_subscriptions: dict[str, Callable[[mqtt.MQTTMessage], None]] = {}
        self._topics: dict[str, tuple[str, str]] = {}
        client = BufferedClient(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        if broker.username:
            client.username_pw_set(broker.username, broker.password)
        if broker.tls or ca_file:
            client.tls_set(ca_certs=str(ca_file) if ca_file else None, cert_reqs=ssl.CERT_REQUIRED)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self.client = client

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self.client.connect_async(
            self.broker.host,
            self.broker.port,
            keepalive=KEEPALIVE_S,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()

    def telemetry_filter(self) -> str:
        wanted = topics.subscription(self.base, "telemetry")
        # Shared: the broker hands each reading to one member of the group.
        return f"$share/{self.share_group}/{wanted}" if self.share_group else wanted

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning("broker %s refused the connection: %s", self.broker, reason)
            return
        log.info("connected to %s (session present: %s)", self.broker, flags.session_present)
        subs = [
            self.telemetry_filter(),
            topics.subscription(self.base, "status"),
            topics.subscription(self.base, "meta"),
            *self.extra_subscriptions,
        ]
        _result, self._subscribe_mid = client.subscribe([(s, 1) for s in subs])

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.warning("broker %s refused subscriptions: %s", self.broker, ", ".join(refused))
            return
        self.connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected.clear()
        if not self._stopping:
            log.warning("disconnected from %s (%s); reconnecting", self.broker, reason)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.counters.inc("connect_failed")
        log.warning("cannot reach broker %s; retrying", self.broker)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            name = msg.topic  # decoded anew on every access
            handler = self.extra_subscriptions.get(name)
            if handler is not None:
                handler(msg)
                return
            self._ingest(name, bytes(msg.payload))
        except topics.PayloadRejected as exc:
            self.counters.inc("rejected", exc.reason)
            log.debug("rejected %s: %s", name, exc)
        except Exception:  # never let one message kill the network thread
            self.counters.inc("rejected", "internal_error")
            log.exception("could not handle a message on %s", msg.topic)

    def _ingest(self, name: str, payload: bytes) -> None:
        parts = self._topics.get(name)
        if parts is None:
            parts = topics.split(self.base, name)  # a bad topic raises: never cached
            if len(self._topics) >= TOPIC_CACHE:
                self._topics.clear()
            self._topics[name] = parts
        device, kind = parts
        if kind == "telemetry":
            reading = fasttelemetry.parse(payload) or topics.parse_telemetry(payload)
            if reading.device != device:
                raise topics.PayloadRejected("device_mismatch", f"{reading.device} on {name}")
            self.counters.inc("received")
            self.sink(reading)
        elif kind == "status":
            if payload:  # an empty retained message clears the status: nothing to store
                self.sink(parse_status(device, payload))
        elif kind == "meta" and payload:
            self.sink(parse_meta(device, payload))
