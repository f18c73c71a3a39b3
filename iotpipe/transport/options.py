"""How a client connects, declared once: where, as whom, how securely, with which session.

Every process builds its paho client here (``build``), so keepalive, session expiry, TLS
with client certificates and the will are set the same way everywhere. ``build`` only
remembers where to connect (``connect_async``): a driver (``selectloop``, ``thread``) or
``blocking.connect_now`` does the connecting.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from iotpipe.endpoints import BrokerURL
from iotpipe.topics import Message
from iotpipe.transport.properties import connect_properties

MQTT5 = 5
MQTT311 = 4  # the protocol level MQTT 3.1.1 sends in its CONNECT
KEEPALIVE_S = 30
SESSION_EXPIRY_S = 7 * 24 * 3600
"""How long the broker keeps a persistent session (subscriptions, queued QoS 1 messages)
while its client is away: a week covers a long weekend with the host switched off."""


@dataclass(frozen=True, slots=True)
class Login:
    """Where the broker is and how to prove who we are (password and/or client certificate)."""

    broker: BrokerURL
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @property
    def tls(self) -> bool:
        return self.broker.tls or self.ca_file is not None or self.cert_file is not None


@dataclass(frozen=True, slots=True)
class Options:
    """Everything about a connection but the client id.

    ``session_expiry_s`` > 0 makes the session persistent: clean start off, kept that long
    by the broker (MQTT 3.1.1: clean session off, kept for the broker's
    ``persistent_client_expiration``). ``fresh_first`` starts that session fresh at the
    first connect and resumes it on reconnects (a short-lived watcher that must not
    inherit an old one).
    ``manual_ack`` lets the application acknowledge QoS 1 messages (``Client.ack``) after
    it has kept them; ``receive_maximum`` (MQTT 5) bounds how many are in flight (3.1.1:
    the broker's ``max_inflight_messages`` does).
    """

    login: Login
    protocol: int = MQTT5
    keepalive: int = KEEPALIVE_S
    session_expiry_s: int = 0
    fresh_first: bool = False
    will: Message | None = None  # what the broker publishes for us if we vanish
    receive_maximum: int | None = None
    manual_ack: bool = False
    max_inflight: int | None = None
    max_queued: int | None = None

    @property
    def persistent(self) -> bool:
        return self.session_expiry_s > 0


def build(options: Options, client_id: str = "") -> mqtt.Client:
    """A paho client configured by ``options``, not yet connected."""
    v5 = options.protocol == MQTT5
    if options.persistent and not client_id:
        raise ValueError("a persistent session needs a client id")
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else not options.persistent,
        manual_ack=options.manual_ack,
    )
    if options.will is not None:
        w = options.will
        client.will_set(w.topic, w.payload, qos=w.qos, retain=w.retain)
    if options.max_inflight is not None:
        client.max_inflight_messages_set(options.max_inflight)
    if options.max_queued is not None:
        client.max_queued_messages_set(options.max_queued)
    secure(client, options.login)
    broker = options.login.broker
    if v5:
        fresh_first = options.persistent and options.fresh_first
        clean = mqtt.MQTT_CLEAN_START_FIRST_ONLY if fresh_first else not options.persistent
        props = connect_properties(options.session_expiry_s, options.receive_maximum)
        client.connect_async(
            broker.host, broker.port, options.keepalive, clean_start=clean, properties=props
        )
    else:
        client.connect_async(broker.host, broker.port, options.keepalive)
    return client


def secure(client: mqtt.Client, login: Login) -> None:
    """The login, and TLS verifying the broker (with our certificate when we have one)."""
    username = login.username or login.broker.username
    if username:
        client.username_pw_set(username, login.password or login.broker.password)
    if login.tls:
        client.tls_set(
            ca_certs=str(login.ca_file) if login.ca_file else None,
            certfile=str(login.cert_file) if login.cert_file else None,
            keyfile=str(login.key_file) if login.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
