"""MQTT 5 properties: the session's CONNECT, and request/response (response topic and
correlation data), read and written here only."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def _new(packet: int) -> Properties:
    return Properties(packet)  # type: ignore[no-untyped-call]


def connect_properties(session_expiry_s: int, receive_maximum: int | None) -> Properties:
    props = _new(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry_s
    if receive_maximum is not None:
        props.ReceiveMaximum = receive_maximum
    return props


def request(response_topic: str, correlation: bytes) -> Properties:
    """A request's PUBLISH: where to answer, and what to answer with."""
    props = _new(PacketTypes.PUBLISH)
    props.ResponseTopic = response_topic
    props.CorrelationData = correlation
    return props


def reply(correlation: bytes | None) -> Properties | None:
    """An answer's PUBLISH: the request's correlation data handed back (none: no props)."""
    if correlation is None:
        return None
    props = _new(PacketTypes.PUBLISH)
    props.CorrelationData = correlation
    return props


def end_session() -> Properties:
    """A DISCONNECT that tells the broker to forget the session at once."""
    props = _new(PacketTypes.DISCONNECT)
    props.SessionExpiryInterval = 0
    return props


def response_topic(msg: mqtt.MQTTMessage) -> str | None:
    topic = getattr(msg.properties, "ResponseTopic", None)
    return str(topic) if topic else None


def correlation(msg: mqtt.MQTTMessage) -> bytes | None:
    data = getattr(msg.properties, "CorrelationData", None)
    return bytes(data) if data else None
