"""One serial port served by the bridge: its board's state, spool and MQTT connection.

The one place that does I/O for a port. A batch read from the port goes to ``device``,
which returns the readings and events to store and queues every other effect as a value;
this carries out those effects (a new MQTT connection for the device, retained status and
meta, answers, bytes for the board) and then stores the batch in one spool transaction
together with the marks ``continuity`` moved; if that fails the marks go back, and the
board is asked to replay. Every (re)opened port and every spool that opens starts with a
replay request after the device's mark. A port's device has its own MQTT connection,
whose will says that device is offline if the bridge dies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from paho.mqtt.client import MQTTMessage

from iotpipe import topics
from iotpipe.bridge.continuity import RESTART, SPOOL_FULL, Gap
from iotpipe.bridge.device import Device
from iotpipe.bridge.effects import Connect, Publish, Retain, Write
from iotpipe.bridge.outbox import Outbox
from iotpipe.bridge.portio import PortLost
from iotpipe.bridge.portretry import RetriedPort
from iotpipe.bridge.publisher import MqttOptions, Publisher
from iotpipe.bridge.requests import Router, parse_request, route_for
from iotpipe.bridge.spool import SpoolError
from iotpipe.bridge.statelog import changed
from iotpipe.bridge.storage import Storage
from iotpipe.bridge.translate import Translator
from iotpipe.counters import Counters
from iotpipe.mqttwire import discovery
from iotpipe.mqttwire.request import RequestRejected

log = logging.getLogger(__name__)

CLIENT_PREFIX = "iotpipe-bridge-"


@dataclass(frozen=True, slots=True)
class LinkConfig:
    spec: str  # what --serial (or `auto`) named: resolved again at each (re)open
    baud: int
    mqtt: MqttOptions
    base_topic: str
    bridge_status: str
    spool_dir: Path | None  # None: QoS 0, nothing stored
    spool_max_bytes: int
    drain_rate: float
    keep_acked_s: float
    request_timeout: float
    ha_prefix: str | None
    device_id: str | None = None


class Link:
    def __init__(self, config: LinkConfig, counters: Counters) -> None:
        self.config = config
        self.counters = counters
        self.translator = Translator(config.base_topic)
        self.router = Router(config.request_timeout)
        self.serial = RetriedPort(config.spec, config.baud, counters)
        self.storage: Storage | None = None
        self.outbox: Outbox | None = None
        if config.spool_dir is not None:
            self.storage = Storage(config.spool_dir, config.spool_max_bytes, counters)
            self.outbox = Outbox(
                self.storage,
                self._send,
                counters,
                config.drain_rate,
                on_dropped=self._report_dropped,
                keep_acked_s=config.keep_acked_s,
            )
        self._generation = 0  # of the spool file continuity was loaded from
        self.publisher: Publisher | None = None
        self._publishing_as: str | None = None  # the device whose will that publisher holds
        self.device = Device(
            self.translator, self.router, counters, config.ha_prefix, config.bridge_status
        )

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        self._sync_spool()
        known = self.config.device_id or self._recall_device()
        if known:  # so a spool left by the last run drains before the board speaks
            self.device.adopt(known)
        self._apply()

    def publishers(self) -> list[Publisher]:
        return [] if self.publisher is None else [self.publisher]

    @property
    def hurry(self) -> bool:
        return self.outbox is not None and self.outbox.draining

    def open_if_due(self, now: float) -> None:
        if self.serial.open_if_due(now):
            self.device.ask_info()
            self.device.continuity.ask(self.device.id, now)
            self._apply()

    def step(self) -> None:
        if self.outbox is not None:
            self.outbox.step()
            self._apply()  # readings the spool's bound dropped are reported

    def shut_down(self) -> None:
        if self.outbox is not None:
            self.outbox.step()  # PUBACKs already received: do not send those again
        self.serial.close()
        if self.publisher is not None and self._publishing_as is not None:
            self.publisher.stop(self.translator.status(self._publishing_as, online=False))
        if self.storage is not None:
            if self.storage.spool is not None and self.outbox is not None:
                log.info(
                    "%d readings of %s stay in the spool for the next start",
                    self.outbox.backlog,
                    self.config.spec,
                )
            self.storage.close()

    # --- the one place a port's effects happen ----------------------------------------
    def _apply(self) -> None:
        for effect in self.device.take():
            match effect:
                case Write(data):
                    self.serial.write(data)
                case Connect(device):
                    self._connect(device)
                case Retain(message) if self.publisher is not None:
                    self.publisher.keep_retained(message)
                case Publish(message, correlation) if self.publisher is not None:
                    self.publisher.publish(message, correlation)

    def _connect(self, device: str) -> None:
        """MQTT for the board that says it is ``device``: the will is its status."""
        if self.publisher is not None and self._publishing_as is not None:
            self.publisher.stop(self.translator.status(self._publishing_as, online=False))
        spool = self.storage.spool if self.storage is not None else None
        if spool is not None:
            try:
                spool.remember("device", device)
            except SpoolError as exc:
                self.storage.failed(exc)  # type: ignore[union-attr]
        publisher = Publisher(
            self.config.mqtt,
            CLIENT_PREFIX + device,
            self.translator.status(device, online=False),
            self.counters,
            self.outbox,
        )
        publisher.handle(topics.topic(self.config.base_topic, device, "cmd"), self._on_command)
        if self.config.ha_prefix is not None:
            publisher.handle(discovery.birth_topic(self.config.ha_prefix), self._on_ha_birth)
        publisher.start()
        self.publisher, self._publishing_as = publisher, device
        changed(log, "publishing", device=device, broker=self.config.mqtt.broker)

    def _send(self, topic: str, payload: bytes) -> int | None:
        return None if self.publisher is None else self.publisher.send(topic, payload)

    def _on_command(self, msg: MQTTMessage) -> None:
        device = self.device.id or "unknown"
        payload = bytes(msg.payload)
        props = msg.properties
        route = route_for(
            payload,
            getattr(props, "ResponseTopic", None),
            getattr(props, "CorrelationData", None),
            topics.topic(self.config.base_topic, device, "reply"),
        )
        try:
            request = parse_request(payload, route)
        except RequestRejected as exc:
            self.counters.inc("commands_rejected", exc.reason)
            log.info("refused a command for %s: %s", device, exc.detail)
            self.device.reply_error(route, exc.client_id, exc.detail)
        else:
            self.counters.inc("commands")
            if self.serial.source is None:
                self.device.reply_error(route, request.client_id, f"{device} is offline (no port)")
            else:
                self.device.act(self.router.submit(request, time.monotonic()))
        self._apply()

    def _on_ha_birth(self, msg: MQTTMessage) -> None:
        if msg.payload == topics.ONLINE and self.publisher is not None:
            changed(log, "home_assistant_online", then="publishing every retained topic again")
            self.publisher.republish_retained()

    # --- the serial port --------------------------------------------------------------
    def read_port(self) -> None:
        try:
            chunk = self.serial.read()
        except (PortLost, OSError) as exc:
            self.serial.lost(exc)
            self.device.set_online(False, "port closed")
            self.device.act(self.router.fail_all("the board's port closed"))
            self._apply()
            return
        now = time.time()  # after the read: it may have waited for the line
        lines = self.serial.splitter.feed(chunk)
        self._store(lambda: self.device.handle_all(lines, now))

    def _store(self, produce: Callable[[], list[tuple[str, bytes]]]) -> None:
        """Run ``produce`` (which admits readings), carry out its effects (a new device's
        connection first), and store what it made in one commit."""
        continuity = self.device.continuity
        if self.outbox is None or self.storage is None:  # QoS 0: nothing to commit
            batch = produce()
            self._apply()
            continuity.committed()
            if batch and self.publisher is not None:
                self.publisher.send_many(batch, qos=0)
                self.counters.inc("published", n=len(batch))
            return
        if self.storage.spool is None and self.storage.due(time.monotonic()):
            self.storage.open()
        self._sync_spool()
        continuity.storing = self.storage.due(time.monotonic())
        continuity.begin()
        batch = produce()
        self._apply()
        marks = continuity.pending_marks()
        if self.outbox.put(batch, continuity.staged_seen(), marks):
            continuity.committed()
        else:
            continuity.rollback(SPOOL_FULL)
        self._apply()  # a rollback asks the board to replay

    def _sync_spool(self) -> None:
        """A spool file opened: load the marks from it (the first) or give it ours."""
        storage = self.storage
        if storage is None or storage.spool is None or storage.generation == self._generation:
            return
        first = self._generation == 0
        self._generation = storage.generation
        if self.outbox is not None:
            self.outbox.reset()
        continuity = self.device.continuity
        if first:
            try:
                continuity.load(storage.spool.marks(), storage.spool.seen(), RESTART)
            except SpoolError as exc:
                storage.failed(exc)
                return
        else:  # a damaged file was replaced: the marks in memory go into the new one
            continuity.dirty.update(continuity.marks)
        if self.serial.source is not None:  # else the port's opening asks
            continuity.ask(self.device.id, time.monotonic())

    def _report_dropped(self, gaps: list[Gap]) -> None:
        self.device.report_dropped(gaps)

    def _recall_device(self) -> str | None:
        spool = self.storage.spool if self.storage is not None else None
        if spool is None:
            return None
        try:
            known: str | None = spool.recall("device")
        except SpoolError as exc:
            self.storage.failed(exc)  # type: ignore[union-attr]
            return None
        return known

    # --- housekeeping -----------------------------------------------------------------
    def housekeeping(self, now: float) -> None:
        actions = self.router.expire(now)
        self.counters.inc("command_timeouts", n=len(actions.replies))
        self.device.act(actions)
        self.device.check_quiet()
        self._apply()
        continuity = self.device.continuity
        if continuity.replay is not None:
            self._store(lambda: self._expired_replay(now))
        elif self.storage is not None and self.storage.spool is None:
            self._store(list)  # retries opening the spool when due

    def _expired_replay(self, now: float) -> list[tuple[str, bytes]]:
        self.device.continuity.expire(now, self.device.id)
        events: list[tuple[str, bytes]] = self.device.gap_events()
        return events

    @property
    def online(self) -> bool:
        return self.publisher is not None and self.publisher.connected.is_set()
