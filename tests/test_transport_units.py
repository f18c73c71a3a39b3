"""The transport's pure parts: the reconnect policy, and which handler gets a message."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest

from iotpipe.counters import Counters
from iotpipe.endpoints import BrokerURL
from iotpipe.transport import MQTT311, Login, Options, Session
from iotpipe.transport.backoff import Backoff


def test_backoff_doubles_to_30_s_and_starts_again_after_a_connection_that_worked() -> None:
    backoff = Backoff()
    assert [backoff.failed() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    backoff.worked()
    assert backoff.failed() == 1.0


def _deliver(session: Session, topic: str, payload: bytes = b"x") -> None:
    msg = mqtt.MQTTMessage(mid=1, topic=topic.encode())
    msg.payload = payload
    session.client.on_message(session.client, None, msg)  # paho's own entry point


def test_each_message_goes_to_the_handler_whose_filter_matches_shared_ones_included() -> None:
    counters = Counters("test")
    session = Session(Options(Login(BrokerURL("mqtt", "127.0.0.1", 1))), "", counters)
    got: list[tuple[str, str]] = []
    session.handle("$share/group/iotpipe/+/telemetry", lambda m: got.append(("t", m.topic)))
    session.handle("iotpipe/+/status", lambda m: got.append(("s", m.topic)))

    def broken(msg: mqtt.MQTTMessage) -> None:
        raise RuntimeError("a bug in a handler")

    session.handle("iotpipe/+/event", broken)
    for topic in ("iotpipe/a/telemetry", "iotpipe/b/status", "iotpipe/a/telemetry", "other/x"):
        _deliver(session, topic)
    _deliver(session, "iotpipe/a/event")  # logged and counted, never raised
    assert got == [("t", "iotpipe/a/telemetry"), ("s", "iotpipe/b/status"),
                   ("t", "iotpipe/a/telemetry")]  # fmt: skip
    assert counters.get("handler_errors") == 1


def test_a_persistent_session_needs_a_client_id_and_3_1_1_is_built_as_asked() -> None:
    login = Login(BrokerURL("mqtt", "127.0.0.1", 1))
    with pytest.raises(ValueError, match="needs a client id"):
        Session(Options(login, session_expiry_s=60), "", Counters("test"))
    session = Session(Options(login, protocol=MQTT311), "me", Counters("test"))
    assert session.client.protocol == mqtt.MQTTv311
