"""MQTT transport for the bridge: knows topics and payloads as bytes, nothing of boards.

paho-mqtt 2.x, MQTT 5, QoS 1, a persistent session (clean start off, a session expiry) and
automatic reconnection with backoff (``mqttio.Connection``, driven by the bridge's loop).
The will says ``offline`` on the status topic it is given; the retained messages given to
``keep_retained`` are published again after every (re)connect. Messages paho still holds
unacknowledged when a connection comes up are dropped: the outbox sends them again from
the spool, in order, so they are not sent twice.
A failed publish is logged and counted, never raised out of the daemon.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from iotpipe.bridge.mqttio import Connection
from iotpipe.bridge.statelog import changed
from iotpipe.bridge.translate import Message
from iotpipe.counters import Counters
from iotpipe.endpoints import BrokerURL

log = logging.getLogger(__name__)

KEEPALIVE_S = 30
SESSION_EXPIRY_S = 7 * 24 * 3600
MAX_QUEUED = 10_000  # held by paho: the outbox window plus answers and retained state

Handler = Callable[[mqtt.MQTTMessage], None]


@dataclass(frozen=True, slots=True)
class MqttOptions:
    broker: BrokerURL
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


class Listener(Protocol):
    """What the outbox wants to hear from the transport."""

    def connected(self) -> None: ...
    def disconnected(self) -> None: ...
    def acked(self, mid: int) -> None: ...


class _Deaf:
    def connected(self) -> None:
        pass

    def disconnected(self) -> None:
        pass

    def acked(self, mid: int) -> None:
        pass


def _properties(packet: int) -> Properties:
    return Properties(packet)  # type: ignore[no-untyped-call]


class Publisher:
    def __init__(
        self,
        options: MqttOptions,
        client_id: str,
        will: Message,
        counters: Counters,
        listener: Listener | None = None,
        persistent: bool = True,
    ) -> None:
        self.options = options
        self.client_id = client_id
        self.broker = options.broker
        self.counters = counters
        self.listener: Listener = listener or _Deaf()
        self.persistent = persistent
        self.connected = threading.Event()
        self._retained: dict[str, Message] = {}
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._stopping = False
        self._unreachable = False
        client = _client(options, client_id, will, persistent)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        if listener is not None:
            # paho builds a ReasonCode and Properties for every QoS 0 message it sends when
            # on_publish is set: a third of a QoS 0 reading's cost, for nobody to hear.
            client.on_publish = self._on_publish
        client.on_message = self._on_message
        self.client = client
        self.connection = Connection(client, self._on_connect_fail)

    def start(self) -> None:
        self.connection.enable()

    def handle(self, topic_filter: str, handler: Handler) -> None:
        """Subscribe (now and after every reconnect) and give matching messages to handler."""
        with self._lock:
            self._handlers[topic_filter] = handler
        if self.connected.is_set():
            self.client.subscribe(topic_filter, qos=1)

    def keep_retained(self, message: Message) -> None:
        """Publish now and again after every reconnect (status, meta, discovery)."""
        with self._lock:
            self._retained[message.topic] = message
        if self.connected.is_set():  # otherwise _on_connect publishes it
            self.publish(message)

    def republish_retained(self) -> None:
        with self._lock:
            retained = list(self._retained.values())
        for message in retained:
            self.publish(message)

    def publish(self, message: Message, correlation: bytes | None = None) -> bool:
        """Publish now if connected (retained messages also go out again on connect)."""
        if not self.connected.is_set():
            return False
        props = None
        if correlation is not None:
            props = _properties(PacketTypes.PUBLISH)
            props.CorrelationData = correlation
        info = self.client.publish(
            message.topic, message.payload, message.qos, message.retain, properties=props
        )
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self.counters.inc("publish_errors", mqtt.error_string(info.rc))
            log.warning("could not publish to %s: %s", message.topic, mqtt.error_string(info.rc))
            return False
        return True

    def send(self, topic: str, payload: bytes) -> int | None:
        """QoS 1 publish for the outbox: the message id, or None when not connected."""
        if not self.connected.is_set():
            return None
        info = self.client.publish(topic, payload, 1)
        return info.mid if info.rc == mqtt.MQTT_ERR_SUCCESS else None

    def send_many(self, messages: list[tuple[str, bytes]], qos: int) -> None:
        """Fire and forget (QoS 0 readings): what the broker does not get is gone."""
        if not self.connected.is_set():
            self.counters.inc("dropped", "not_connected", len(messages))
            return
        publish = self.client.publish
        for topic, payload in messages:
            publish(topic, payload, qos)

    def stop(self, last_words: Message | None = None) -> None:
        """Say goodbye (a clean disconnect does not fire the will) and stop the loop."""
        self._stopping = True
        if last_words is not None and self.connected.is_set():
            info = self.client.publish(last_words.topic, last_words.payload, 1, True)
            self.connection.flush(info.is_published, 5)
        if self.connection.socket() is not None:
            self.client.disconnect()
            self.connection.flush(lambda: not self.connection.want_write(), 2)
        self.connection.disable()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        if reason.is_failure:
            changed(log, "broker_refused", logging.ERROR, broker=self.broker, reason=reason)
            return
        client.drop_out_messages()  # the outbox sends them again, in order
        self._unreachable = False
        self.connection.connected()
        self.connected.set()
        self.counters.inc("connects")
        changed(
            log,
            "broker_connected",
            broker=self.broker,
            client=self.client_id,
            session_present=flags.session_present,
        )
        with self._lock:
            filters = list(self._handlers)
        for topic_filter in filters:
            client.subscribe(topic_filter, qos=1)
        self.republish_retained()
        self.listener.connected()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        if self.connected.is_set() and not self._stopping:
            self.counters.inc("disconnects")
            changed(log, "broker_lost", logging.WARNING, broker=self.broker, reason=reason)
        self.connected.clear()
        self.connection.lost(time.monotonic())
        self.listener.disconnected()

    def _on_connect_fail(self, error: str) -> None:
        if self._unreachable:  # said once; each retry only at DEBUG
            log.debug("still cannot reach the broker at %s: %s", self.broker, error)
            return
        self._unreachable = True
        changed(
            log,
            "broker_unreachable",
            logging.ERROR,
            broker=self.broker,
            error=error,
            hint="cannot reach the broker: is Mosquitto running there (`iotpipe broker`)? retrying",
        )

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Any
    ) -> None:
        if reason.is_failure:  # the broker will never take it (not authorised, too big…)
            refused = self.counters.get("refused_by_broker", str(reason))
            self.counters.inc("refused_by_broker", str(reason))
            if refused in (0, 9, 99, 999, 9999):
                changed(
                    log, "broker_refused_message", logging.WARNING, reason=reason, count=refused + 1
                )
        self.listener.acked(mid)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            handlers = [
                h for f, h in self._handlers.items() if mqtt.topic_matches_sub(f, msg.topic)
            ]
        for handler in handlers:
            try:
                handler(msg)
            except Exception:  # a bug in one handler must not stop paho's thread
                log.exception("handling a message on %s failed", msg.topic)


def _client(options: MqttOptions, client_id: str, will: Message, persistent: bool) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.will_set(will.topic, will.payload, qos=1, retain=True)
    # No in-flight limit of paho's own: on every PUBACK paho walks each message it holds
    # to find the next to send (5 to 20 µs per QoS 1 reading, docs/benchmarks.md). The
    # outbox keeps its readings within its window instead (outbox.WINDOW).
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(MAX_QUEUED)
    _secure(client, options)
    props = _properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_EXPIRY_S if persistent else 0
    # Only remembers where to connect: the bridge's loop connects, through `Connection`.
    client.connect_async(
        options.broker.host,
        options.broker.port,
        keepalive=KEEPALIVE_S,
        clean_start=not persistent,
        properties=props,
    )
    return client


def _secure(client: mqtt.Client, options: MqttOptions) -> None:
    username = options.username or options.broker.username
    password = options.password or options.broker.password
    if username:
        client.username_pw_set(username, password)
    if options.broker.tls or options.ca_file or options.cert_file:
        client.tls_set(
            ca_certs=str(options.ca_file) if options.ca_file else None,
            certfile=str(options.cert_file) if options.cert_file else None,
            keyfile=str(options.key_file) if options.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
