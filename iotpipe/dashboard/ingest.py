"""MQTT ingest: subscribe, validate each message where it enters, hand it to the writer.

A session of ``iotpipe.transport``: MQTT 3.1.1, QoS 1 and a persistent session (clean
session off, a client id stable for the data directory), so readings published while the
dashboard restarts wait in the broker instead of being lost. 3.1.1 because ingest needs no
properties (the dashboard's requests and their answers go by ``outputs``, on MQTT 5), and
paho then decodes no properties per PUBLISH: about a third less CPU per reading
(docs/benchmarks.md, Dashboard). Driven by
the transport's ``NetworkThread`` (reads message after message per wake-up), which
reconnects with backoff and keeps retrying when the broker is not there at start-up; the
HTTP side serves history meanwhile. A malformed message is counted by reason and logged
sparsely (a flood of garbage must not flood the log), never raised.

``manual_ack`` makes paho leave each QoS 1 PUBACK to us (``Client.ack``): the writer
acknowledges a message only after the transaction holding it committed. How many
unacknowledged messages the broker may have handed us at once is, for a 3.1.1 client, the
broker's ``max_inflight_messages`` (10,000 in iotpipe's broker configuration): a window
large enough that a commit of a few thousand readings keeps the stream flowing, small
enough that a store that cannot write holds little here. The broker keeps the session
while we are away for its ``persistent_client_expiration`` (30 days there).

Every message goes to the writer with its acknowledgement token, also one rejected here
(without an item) and a board event (handed to ``on_event`` first), and the writer
acknowledges in arrival order once stored (``writer.py``). A token names the connection it
came on: after a reconnect the broker sends unacknowledged messages again under the same
packet ids, and an acknowledgement meant for the old connection could otherwise
acknowledge a new message of that id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from iotpipe import topics
from iotpipe.counters import Counters
from iotpipe.dashboard import fasttelemetry
from iotpipe.dashboard.payloads import parse_meta, parse_status
from iotpipe.dashboard.writer import Item, Token
from iotpipe.transport import MQTT311, SESSION_EXPIRY_S, Login, NetworkThread, Options, Session

log = logging.getLogger(__name__)

FUTURE_LIMIT_S = 3600.0
"""A reading stamped further ahead of our clock than this is refused (``ts_in_future``):
its receipt time is wrong, and kept it would sort after every true reading and outlive
retention. An hour allows for a bridge host whose clock is off, not for a wrong year."""
TOPIC_CACHE = 10_000
"""Topics already split into (device, kind): every reading of a device has the same one."""


def options(login: Login) -> Options:
    return Options(
        login,
        protocol=MQTT311,
        session_expiry_s=SESSION_EXPIRY_S,  # 3.1.1: persistent, for as long as the broker keeps it
        manual_ack=True,
    )


class Ingest:
    def __init__(
        self,
        login: Login,
        base: str,
        client_id: str,
        sink: Callable[[Item | None, Token], None],
        counters: Counters,
        share_group: str | None = None,
    ) -> None:
        self.broker = login.broker
        self.base = base
        self.sink = sink
        self.counters = counters
        self.share_group = share_group
        self.session = Session(options(login), client_id, counters)
        self.client = self.session.client
        self.connected = self.session.connected
        self.subscribed = self.session.subscribed
        """Set once the broker has our subscriptions: from then on our persistent session
        keeps every reading for us, also while we are away."""
        self._stopping = False
        self._generation = 0
        self._ack_lock = threading.Lock()
        self._topics: dict[str, tuple[str, str]] = {}
        self._messages = 0
        self.session.on_up = self._on_up
        self.session.on_refused = self._on_refused
        self.session.on_down = self._on_down
        wanted = [topics.subscription(base, kind) for kind in ("status", "meta")]
        for topic_filter in (self.telemetry_filter(), *wanted):
            self.session.handle(topic_filter, self._on_message)
        self.loop = NetworkThread(self.client, lambda: self._messages, self._connect_failed)

    def on_event(self, handler: Callable[[mqtt.MQTTMessage], None]) -> None:
        """Board events (the bridge's gap reports) go to ``handler``, then are acknowledged
        in their turn like every other message."""

        def handle(msg: mqtt.MQTTMessage) -> None:
            self._messages += 1
            token = (self._generation, msg.mid, msg.qos)
            try:
                handler(msg)
            finally:
                self.sink(None, token)

        self.session.handle(topics.subscription(self.base, "event"), handle)

    def start(self) -> None:
        self.loop.start()

    def stop(self) -> None:
        self._stopping = True
        self.loop.stop()

    def telemetry_filter(self) -> str:
        wanted = topics.subscription(self.base, "telemetry")
        # Shared: the broker hands each reading to one member of the group.
        return f"$share/{self.share_group}/{wanted}" if self.share_group else wanted

    def _on_refused(self, reason: ReasonCode) -> None:
        log.warning("broker %s refused the connection: %s", self.broker, reason)

    def _on_up(self, session_present: bool) -> None:
        self.loop.connected()
        log.info("connected to %s (session present: %s)", self.broker, session_present)
        if not session_present and self.subscribed.is_set():
            # A broker killed before it ever saved our session (autosave_interval) starts
            # without it: what the bridges sent before we subscribe again went to no one.
            self.counters.inc("sessions_lost")
            log.warning(
                "broker %s had forgotten this dashboard's session (was it killed, not "
                "stopped?): readings published before this reconnect may be missing; "
                "check the history with `iotpipe export` and the bridges' gap reports",
                self.broker,
            )
        with self._ack_lock:
            self._generation += 1

    def ack(self, tokens: list[Token]) -> None:
        """Acknowledge, in order, the messages of these tokens still on this connection."""
        with self._ack_lock:
            for generation, mid, qos in tokens:
                if qos and generation == self._generation:
                    self.client.ack(mid, qos)

    def _on_down(self, reason: ReasonCode, was_up: bool) -> None:
        with self._ack_lock:
            self._generation += 1
        if not self._stopping:
            log.warning("disconnected from %s (%s); reconnecting", self.broker, reason)

    def _connect_failed(self) -> None:
        self.counters.inc("connect_failed")
        log.warning("cannot reach broker %s; retrying", self.broker)

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        self._messages += 1
        token = (self._generation, msg.mid, msg.qos)
        item: Item | None = None
        try:
            item = self._ingest(msg.topic, bytes(msg.payload))
        except topics.PayloadRejected as exc:
            self._rejected(exc.reason, f"{msg.topic}: {exc}")
        except Exception:  # never let one message kill the network thread
            self.counters.inc("rejected", "internal_error")
            log.exception("could not handle a message on %s", msg.topic)
        self.sink(item, token)

    def _rejected(self, reason: str, detail: str) -> None:
        """Counted always; logged for the 1st, 10th, 100th… of a reason (never a flood)."""
        self.counters.inc("rejected", reason)
        n = self.counters.get("rejected", reason)
        if n == 1 or (n >= 10 and str(n).rstrip("0") == "1"):
            log.warning("rejected message #%d for %s: %s", n, reason, detail)
        else:
            log.debug("rejected %s", detail)

    def _ingest(self, name: str, payload: bytes) -> Item | None:
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
            ahead = reading.ts - time.time()
            if ahead > FUTURE_LIMIT_S:
                raise topics.PayloadRejected(
                    "ts_in_future",
                    f"{reading.device} boot {reading.boot} seq {reading.seq}: ts "
                    f"{reading.ts:.3f} is {ahead:.0f} s ahead of this clock "
                    f"(limit {FUTURE_LIMIT_S:.0f} s)",
                )
            self.counters.inc("received")
            return reading
        if kind == "status":
            # An empty retained message clears the status: nothing to store.
            return parse_status(device, payload) if payload else None
        if kind == "meta" and payload:
            return parse_meta(device, payload)
        return None
