"""One connection's behaviour above the socket: a table of subscription handlers sent again
after every (re)connect, publishing that logs and counts what fails (never raising out of
a daemon), and hooks for connect, loss and acknowledgements. Which thread drives the
socket is the driver's business (``selectloop``, ``thread``, or paho's own thread here).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from iotpipe.counters import Counters
from iotpipe.transport.backoff import RECONNECT_MAX_S, RECONNECT_MIN_S
from iotpipe.transport.options import Options, build
from iotpipe.transport.properties import end_session

log = logging.getLogger(__name__)

Handler = Callable[[mqtt.MQTTMessage], None]
ROUTES_CACHED = 10_000  # topics already matched to their handler: one per device and kind
_UNMATCHED = object()  # a topic not in the cache yet (None there: no handler wants it)


def _matchable(topic_filter: str) -> str:
    """The filter messages are matched against: a shared subscription's without its
    ``$share/<group>/`` (the broker delivers them under their own topic)."""
    if topic_filter.startswith("$share/"):
        return topic_filter.split("/", 2)[2]
    return topic_filter


class Session:
    def __init__(self, options: Options, client_id: str, counters: Counters) -> None:
        self.options = options
        self.client_id = client_id
        self.counters = counters
        self.broker = options.login.broker
        self.client = build(options, client_id)
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._ended = threading.Event()  # paho ended a connection (stop_thread waits for it)
        self._unsubscribed = threading.Event()  # the broker's UNSUBACK (end_thread waits)
        """Set once the broker has granted every filter of the table (and stays set)."""
        self.refused: dict[str, str] = {}
        """Filters the broker refused, with its reason."""
        self.on_up: Callable[[bool], None] = lambda session_present: None
        self.on_refused: Callable[[ReasonCode], None] = lambda reason: None
        self.on_down: Callable[[ReasonCode, bool], None] = lambda reason, was_up: None
        """Told of every disconnect (or failed attempt), and whether we had been connected."""
        self._handlers: dict[str, tuple[str, Handler, int]] = {}
        self._routes: dict[str, Handler | None] = {}  # filled on paho's thread only
        self._lock = threading.Lock()
        self._pending: dict[int, list[str]] = {}
        self._granted: set[str] = set()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_unsubscribe = lambda *_args: self._unsubscribed.set()

    # -- subscriptions ------------------------------------------------------------------
    def handle(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        """Subscribe (now if connected, and after every reconnect); the first handler whose
        filter matches a message gets it."""
        with self._lock:
            self._handlers[topic_filter] = (_matchable(topic_filter), handler, qos)
            self._routes.clear()
        if self.connected.is_set():
            self._subscribe([(topic_filter, qos)])

    def _subscribe(self, wanted: list[tuple[str, int]]) -> None:
        with self._lock:
            rc, mid = self.client.subscribe(wanted)
            if rc == mqtt.MQTT_ERR_SUCCESS and mid is not None:
                self._pending[mid] = [f for f, _ in wanted]

    def _route(self, topic: str) -> Handler | None:
        route = self._routes.get(topic, _UNMATCHED)
        if route is not _UNMATCHED:
            return route  # type: ignore[return-value]
        with self._lock:
            found = next(
                (h for f, h, _ in self._handlers.values() if mqtt.topic_matches_sub(f, topic)),
                None,
            )
            if len(self._routes) >= ROUTES_CACHED:
                self._routes.clear()
            self._routes[topic] = found
        return found

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic  # paho decodes it anew on every access
        handler = self._route(topic)
        if handler is None:
            log.debug("no handler for a message on %s", topic)
            return
        try:
            handler(msg)
        except Exception:  # one bad message or handler must not stop the network thread
            self.counters.inc("handler_errors")
            log.exception("handling a message on %s failed", topic)

    # -- publishing ---------------------------------------------------------------------
    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> int | None:
        """The message id, or None (not connected, or refused: logged and counted)."""
        try:
            info = self.client.publish(topic, payload, qos, retain, properties=properties)
        except ValueError as exc:  # a topic or payload paho refuses outright
            self.counters.inc("publish_errors", "invalid")
            log.warning("could not publish to %s: %s", topic, exc)
            return None
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            return info.mid
        if info.rc != mqtt.MQTT_ERR_NO_CONN:
            reason = mqtt.error_string(info.rc)
            self.counters.inc("publish_errors", reason)
            log.warning("could not publish to %s: %s", topic, reason)
        return None

    # -- paho's own thread (clients that need no loop of their own) ---------------------
    def start_thread(self) -> None:
        """Connect and keep connected on paho's thread, with the backoff of ``backoff``."""
        self.client.reconnect_delay_set(int(RECONNECT_MIN_S), int(RECONNECT_MAX_S))
        self.client.loop_start()

    def run_forever(self) -> None:
        """Drive the connection on this thread until ``disconnect``."""
        self.client.loop_forever(retry_first_connection=False)

    def end_thread(self, timeout: float = 5.0) -> None:
        """Leave nothing on the broker, then paho's thread ends: the session is ended with
        the DISCONNECT. Unsubscribed first, its answer awaited: the broker sends nothing of
        the session after it, so the socket paho closes behind the DISCONNECT holds nothing
        unread — closed with unread messages, it is reset, and the broker may lose the
        DISCONNECT with it ("Broken pipe") and keep the session."""
        with self._lock:
            filters = list(self._handlers)
        if filters and self.client.is_connected():
            self._unsubscribed.clear()
            rc, _mid = self.client.unsubscribe(filters)
            if rc == mqtt.MQTT_ERR_SUCCESS:
                self._unsubscribed.wait(timeout)
        self.stop_thread(end_session(), timeout)

    def stop_thread(self, properties: Properties | None = None, timeout: float = 5.0) -> None:
        """A clean disconnect (no will), then paho's thread ends. paho's ``loop_stop`` does
        not wait for what is queued, and the thread could end before it sent the DISCONNECT
        (the broker then keeps the session and its will): paho says it sent it by calling
        ``on_disconnect``, so that is waited for first."""
        self._ended.clear()
        was_connected = self.client.is_connected()
        self.client.disconnect(properties=properties)
        if was_connected:
            self._ended.wait(timeout)
        self.client.loop_stop()

    # -- paho's callbacks ---------------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            self.on_refused(reason)
            return
        with self._lock:
            wanted = [(f, qos) for f, (_, _, qos) in self._handlers.items()]
        if wanted:
            self._subscribe(wanted)
        self.connected.set()
        self.on_up(bool(flags.session_present))

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._lock:
            filters = self._pending.pop(mid, [])
            for topic_filter, reason in zip(filters, reasons, strict=False):
                if reason.is_failure:
                    self.refused[topic_filter] = str(reason)
                else:
                    self._granted.add(topic_filter)
            complete = bool(self._handlers) and self._granted >= set(self._handlers)
        refused = [f"{f} ({self.refused[f]})" for f in filters if f in self.refused]
        if refused:
            self.counters.inc("subscriptions_refused", n=len(refused))
            log.error("broker %s refused our subscriptions: %s", self.broker, ", ".join(refused))
        elif complete:
            if not self.subscribed.is_set():  # a state change: once, not on every reconnect
                log.info("subscribed on %s to %s", self.broker, ", ".join(sorted(self._handlers)))
            self.subscribed.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        was_up = self.connected.is_set()
        self.connected.clear()
        self._ended.set()
        self.on_down(reason, was_up)
