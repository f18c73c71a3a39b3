"""MQTT transport for the bridge: knows topics and payloads as bytes, nothing of boards.

paho-mqtt 2.x with MQTT 5 and QoS 1. The will marks the device offline if the bridge
dies; the retained messages given to ``keep_retained`` are published again after every
(re)connect, so a broker restarted without persistence never shows stale or missing state.
"""

from __future__ import annotations

import logging
import ssl
import threading
from typing import Any

import paho.mqtt.client as mqtt
from iotpipe.bridge.translate import Message
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from iotpipe.counters import Counters
from iotpipe.endpoints import BrokerURL

log = logging.getLogger(__name__)

KEEPALIVE_S = 30
MAX_QUEUED = 100_000  # readings held in memory while the broker is away


class Publisher:
    def __init__(
        self, broker: BrokerURL, client_id: str, will: Message, counters: Counters
    ) -> None:
        self.broker = broker
        self.counters = counters
        self.connected = threading.Event()
        self._retained: dict[str, Message] = {}
        self._lock = threading.Lock()
        self._stopping = False
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        client.will_set(will.topic, will.payload, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_queued_messages_set(MAX_QUEUED)
        if broker.username:
            client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        self.client = client

    def start(self) -> None:
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=KEEPALIVE_S)
        self.client.loop_start()

    def keep_retained(self, message: Message) -> None:
        """Publish now and again after every reconnect (status, meta)."""
        with self._lock:
            self._retained[message.topic] = message
        if self.connected.is_set():  # otherwise _on_connect publishes it
            self.publish(message)

    def publish(self, message: Message) -> bool:
        info = self.client.publish(message.topic, message.payload, message.qos, message.retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self.counters.inc("dropped", "queue_full")
            log.warning("broker away and %d messages queued: dropped %s", MAX_QUEUED, message.topic)
            return False
        self.counters.inc("published")
        return True

    def stop(self, last_words: Message | None = None) -> None:
        """Say goodbye (a clean disconnect does not fire the will) and stop the loop."""
        self._stopping = True
        if last_words is not None and self.connected.is_set():
            self.client.publish(last_words.topic, last_words.payload, 1, True).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        if reason.is_failure:
            log.error("broker %s refused the connection: %s", self.broker, reason)
            return
        self.connected.set()
        self.counters.inc("connects")
        log.info("connected to %s", self.broker)
        with self._lock:
            retained = list(self._retained.values())
        for message in retained:
            client.publish(message.topic, message.payload, message.qos, message.retain)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        if self.connected.is_set() and not self._stopping:
            log.warning("lost the broker %s (%s); reconnecting", self.broker, reason)
        self.connected.clear()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        log.error(
            "cannot reach the broker at %s — is Mosquitto running there "
            "(`iotpipe broker`)? retrying",
            self.broker,
        )
