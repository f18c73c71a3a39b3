"""Connecting at once, for the short-lived clients (`iotpipe sub`, `iotpipe doctor`, the
deploy's watch, `iotpipe announce`): the first CONNACK decides, and a failure is one typed
exception the caller turns into words for people (``iotpipe.mqttlogin``)."""

from __future__ import annotations

import ssl
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from iotpipe.transport.session import Session


class ConnectFailed(Exception):
    """The broker could not be reached, or did not let us in."""


class Unreachable(ConnectFailed):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class TLSFailed(ConnectFailed):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoAnswer(ConnectFailed):
    """Something accepted the TCP connection but gave no CONNACK."""


class Dropped(ConnectFailed):
    """The broker closed the connection before its CONNACK: over TLS, what Mosquitto does
    to a client without the certificate a ``require_certificate`` listener wants."""


class Refused(ConnectFailed):
    def __init__(self, reason: ReasonCode) -> None:
        super().__init__(str(reason))
        self.reason = reason


def connect_now(session: Session, timeout: float = 5.0) -> None:
    """Connect ``session`` on this thread and wait for the broker's answer; the network
    loop is not started (``start_thread`` or ``run_forever`` does that)."""
    client = session.client
    answer: list[ReasonCode] = []
    refused, up = session.on_refused, session.on_up

    def on_refused(reason: ReasonCode) -> None:
        answer.append(reason)
        refused(reason)

    def on_up(session_present: bool) -> None:
        answer.append(ReasonCode(PacketTypes.CONNACK, "Success"))
        up(session_present)

    session.on_refused, session.on_up = on_refused, on_up
    try:
        try:
            client.reconnect()
        except ssl.SSLError as exc:
            raise TLSFailed(str(exc.reason)) from None
        except OSError as exc:
            raise Unreachable(exc.strerror or str(exc)) from None
        deadline = time.monotonic() + timeout
        while not answer and time.monotonic() < deadline:
            rc = client.loop(0.1)
            # Closed under us (paho may have found that already when it sent the CONNECT).
            if rc in (mqtt.MQTT_ERR_CONN_LOST, mqtt.MQTT_ERR_NO_CONN) and not answer:
                raise Dropped()
            if rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
                break
    finally:
        session.on_refused, session.on_up = refused, up
    if not answer:
        client.disconnect()
        raise NoAnswer()
    if answer[0].is_failure:
        client.disconnect()
        raise Refused(answer[0])
