"""The one MQTT transport every iotpipe process uses (docs/architecture.md, "One MQTT
transport"): connection options in one place (``options``), a session with a table of
subscription handlers and counted publishing (``session``), MQTT 5 request/response
properties (``properties``), the reconnect policy (``backoff``) and its drivers — the
caller's own ``select`` loop (``selectloop``), a network thread of our own (``thread``),
paho's own thread (``Session.start_thread``) or a blocking first connect (``blocking``).
Only this package constructs a paho client or drives its network loop
(tests/test_transport_only.py)."""

from iotpipe.transport.blocking import (
    ConnectFailed,
    Dropped,
    NoAnswer,
    Refused,
    TLSFailed,
    Unreachable,
    connect_now,
)
from iotpipe.transport.options import MQTT5, MQTT311, SESSION_EXPIRY_S, Login, Options
from iotpipe.transport.selectloop import SelectDriver
from iotpipe.transport.session import Handler, Session
from iotpipe.transport.thread import NetworkThread

__all__ = [
    "MQTT5",
    "MQTT311",
    "SESSION_EXPIRY_S",
    "ConnectFailed",
    "Dropped",
    "Handler",
    "Login",
    "NetworkThread",
    "NoAnswer",
    "Options",
    "Refused",
    "SelectDriver",
    "Session",
    "TLSFailed",
    "Unreachable",
    "connect_now",
]
