"""The bridge's side of the transport: knows topics and payloads as bytes, nothing of boards.

A thin wrapper over ``iotpipe.transport``: MQTT 5, QoS 1, a persistent session (clean start
off, a session expiry), driven by the bridge's own ``select`` loop (``SelectDriver``, as
``connection``) with the transport's reconnect policy. The will says ``offline`` on the
status topic it is given; the retained messages given to ``keep_retained`` are published
again after every (re)connect. Messages paho still holds unacknowledged when a connection
comes up are dropped: the outbox sends them again from the spool, in order, so they are
not sent twice. A failed publish is logged and counted, never raised out of the daemon.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from iotpipe.bridge.statelog import changed
from iotpipe.bridge.translate import Message
from iotpipe.counters import Counters
from iotpipe.transport import SESSION_EXPIRY_S, Handler, Login, Options, SelectDriver, Session
from iotpipe.transport import properties as props

log = logging.getLogger(__name__)

MAX_QUEUED = 10_000  # held by paho: the outbox window plus answers and retained state

MqttOptions = Login
"""Where the broker is and how the bridge logs in (the transport's ``Login``)."""

__all__ = ["Handler", "Listener", "MqttOptions", "Publisher"]


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


def options_for(login: Login, will: Message, persistent: bool) -> Options:
    return Options(
        login,
        session_expiry_s=SESSION_EXPIRY_S if persistent else 0,
        will=will,  # the contract's retained offline status (translate.py)
        # No in-flight limit of paho's own: on every PUBACK paho walks each message it holds
        # to find the next to send (5 to 20 µs per QoS 1 reading, docs/benchmarks.md). The
        # outbox keeps its readings within its window instead (outbox.WINDOW).
        max_inflight=0,
        max_queued=MAX_QUEUED,
    )


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
        self.session = Session(options_for(options, will, persistent), client_id, counters)
        self.connected = self.session.connected
        self._retained: dict[str, Message] = {}
        self._lock = threading.Lock()
        self._stopping = False
        self._unreachable = False
        self.session.on_up = self._on_up
        self.session.on_refused = self._on_refused
        self.session.on_down = self._on_down
        self.client = self.session.client
        if listener is not None:
            # paho builds a ReasonCode and Properties for every QoS 0 message it sends when
            # on_publish is set: a third of a QoS 0 reading's cost, for nobody to hear.
            self.client.on_publish = self._on_publish
        self.connection = SelectDriver(self.client, self._on_connect_fail)

    def start(self) -> None:
        self.connection.enable()

    def handle(self, topic_filter: str, handler: Handler) -> None:
        """Subscribe (now and after every reconnect) and give matching messages to handler."""
        self.session.handle(topic_filter, handler)

    def keep_retained(self, message: Message) -> None:
        """Publish now and again after every reconnect (status, meta, discovery)."""
        with self._lock:
            self._retained[message.topic] = message
        if self.connected.is_set():  # otherwise _on_up publishes it
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
        mid = self.session.publish(
            message.topic, message.payload, message.qos, message.retain, props.reply(correlation)
        )
        return mid is not None

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
        publish = self.client.publish  # the hot path: no checks per reading
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

    def _on_refused(self, reason: ReasonCode) -> None:
        changed(log, "broker_refused", logging.ERROR, broker=self.broker, reason=reason)

    def _on_up(self, session_present: bool) -> None:
        self.client.drop_out_messages()  # the outbox sends them again, in order
        self._unreachable = False
        self.connection.connected()
        self.counters.inc("connects")
        changed(
            log,
            "broker_connected",
            broker=self.broker,
            client=self.client_id,
            session_present=session_present,
        )
        self.republish_retained()
        self.listener.connected()

    def _on_down(self, reason: ReasonCode, was_up: bool) -> None:
        if was_up and not self._stopping:
            self.counters.inc("disconnects")
            changed(log, "broker_lost", logging.WARNING, broker=self.broker, reason=reason)
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
