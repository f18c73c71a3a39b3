"""The bridge: wiring, and the one loop that runs it.

Mechanism lives elsewhere (``serialside`` keeps the port open, ``device`` turns lines into
messages, ``spool`` keeps readings on disk, ``outbox`` sends them, ``publisher`` talks MQTT
through ``iotpipe.transport``). One thread waits in ``select`` on the port and both MQTT sockets and
does what is ready — no thread hands a message to another, so nothing fights for the GIL
per reading. Only a blocking MQTT connect and the optional metrics server have threads.
A bad line is counted and never stops the loop; a lost port marks the device offline and
is retried with backoff until it returns, at the same path or wherever it reappears.
Each batch read from the port is stored in one spool transaction together with the marks
``continuity`` moved; if that fails the marks go back, and the board is asked to replay.
Every (re)opened port and every spool that opens (at start, after a disk was full or a
damaged file was replaced) starts with a replay request after the device's mark.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from paho.mqtt.client import MQTTMessage

from iotpipe import topics
from iotpipe.bridge import discovery
from iotpipe.bridge.continuity import RESTART, SPOOL_FULL, Gap
from iotpipe.bridge.device import Device
from iotpipe.bridge.metrics import MetricsServer, bridge_registry
from iotpipe.bridge.outbox import DRAIN_TICK_S, KEEP_ACKED_S, Outbox
from iotpipe.bridge.portio import PortLost
from iotpipe.bridge.publisher import MqttOptions, Publisher
from iotpipe.bridge.requests import RequestRejected, Router, parse_request, route_for
from iotpipe.bridge.serialside import SerialSide
from iotpipe.bridge.spool import SpoolError
from iotpipe.bridge.statelog import changed
from iotpipe.bridge.storage import Storage
from iotpipe.bridge.translate import Translator
from iotpipe.counters import Counters
from iotpipe.endpoints import HostPort
from iotpipe.exposition import Gauge

log = logging.getLogger(__name__)

TICK_S = 0.25


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    serial: str
    baud: int
    mqtt: MqttOptions
    base_topic: str
    name: str
    device_id: str | None = None
    spool_dir: Path | None = None
    spool_max_bytes: int = 100 * 2**20
    qos: int = 1
    drain_rate: float = 500.0
    keep_acked_s: float = KEEP_ACKED_S
    request_timeout: float = 4.0
    ha_prefix: str | None = discovery.DEFAULT_PREFIX
    metrics: HostPort | None = None


class Bridge:
    def __init__(self, config: BridgeConfig) -> None:
        self.config = config
        self.counters = Counters("iotpipe_bridge")
        self.translator = Translator(config.base_topic)
        self.router = Router(config.request_timeout)
        self.stopping = threading.Event()
        self.serial = SerialSide(config.serial, config.baud, self.counters)
        self.storage: Storage | None = None
        self.outbox: Outbox | None = None
        if config.qos == 1:
            if config.spool_dir is None:
                raise ValueError("QoS 1 needs a spool directory")
            self.storage = Storage(config.spool_dir, config.spool_max_bytes, self.counters)
            self.outbox = Outbox(
                self.storage,
                self._send,
                self.counters,
                config.drain_rate,
                on_dropped=self._report_dropped,
                keep_acked_s=config.keep_acked_s,
            )
        self._generation = 0  # of the spool file continuity was loaded from
        self.bridge_status = topics.bridge_status(config.base_topic, config.name)
        self.presence = Publisher(
            config.mqtt,
            f"iotpipe-bridge-{config.name}",
            self.translator.bridge_status(config.name, False),
            self.counters,
            persistent=False,
        )
        self.device = Device(
            self.translator,
            self.router,
            self.counters,
            self.serial.write,
            self._connect,
            config.ha_prefix,
            self.bridge_status,
        )
        self.metrics = (
            MetricsServer(config.metrics, bridge_registry(self.counters, self._gauges()))
            if config.metrics
            else None
        )

    # --- lifecycle --------------------------------------------------------------------
    def run(self) -> None:
        self.presence.keep_retained(self.translator.bridge_status(self.config.name, True))
        self.presence.start()
        if self.metrics is not None:
            self.metrics.start()
        self._sync_spool()
        known = self.config.device_id or self._recall_device()
        if known:  # so a spool left by the last run drains before the board speaks
            self.device.adopt(known)
        try:
            self._loop()
        finally:
            self._shut_down()

    def stop(self) -> None:
        self.stopping.set()

    def _loop(self) -> None:
        last_tick = 0.0
        while not self.stopping.is_set():
            now = time.monotonic()
            if self.serial.open_if_due(now):
                self.device.ask_info()
                self.device.continuity.ask(self.device.id, now)
            connections = [p.connection for p in self._publishers()]
            readers: dict[int, Callable[[], None]] = {}
            writers: dict[int, Callable[[], None]] = {}
            for connection in connections:
                sock = connection.socket()
                if sock is not None:
                    readers[sock.fileno()] = connection.readable
                    if connection.want_write():
                        writers[sock.fileno()] = connection.writable
            if self.serial.source is not None:
                readers[self.serial.source.fileno()] = self._read_port
            hurry = self.outbox is not None and self.outbox.draining
            hurry = hurry or any(c.connecting for c in connections)
            ready, writable, _ = select.select(
                list(readers), list(writers), [], DRAIN_TICK_S if hurry else TICK_S
            )
            for fd in writable:
                writers[fd]()
            for fd in ready:
                readers[fd]()
            if self.outbox is not None:
                self.outbox.step()
            now = time.monotonic()
            for connection in connections:
                connection.tick(now)
            if now - last_tick >= TICK_S:
                last_tick = now
                self._housekeeping(now)

    def _publishers(self) -> list[Publisher]:
        found = [self.presence]
        if self.device.publisher is not None:
            found.append(self.device.publisher)
        return found

    def _shut_down(self) -> None:
        if self.outbox is not None:
            self.outbox.step()  # PUBACKs already received: do not send those again
        self.serial.close()
        if self.device.publisher is not None and self.device.id is not None:
            self.device.publisher.stop(self.translator.status(self.device.id, online=False))
        self.presence.stop(self.translator.bridge_status(self.config.name, False))
        if self.metrics is not None:
            self.metrics.stop()
        if self.storage is not None:
            if self.storage.spool is not None:
                log.info("%d readings stay in the spool for the next start", self.outbox.backlog)  # type: ignore[union-attr]
            self.storage.close()
        log.info("bridge stopped; counters: %s", self.counters.snapshot())

    # --- MQTT -------------------------------------------------------------------------
    def _connect(self, device: str) -> Publisher:
        """MQTT for the board that says it is ``device``: the will is its status."""
        old = self.device.publisher
        if old is not None:
            old.stop(self.translator.status(self.device.id or device, online=False))
        spool = self.storage.spool if self.storage is not None else None
        if spool is not None:
            try:
                spool.remember("device", device)
            except SpoolError as exc:
                self.storage.failed(exc)  # type: ignore[union-attr]
        publisher = Publisher(
            self.config.mqtt,
            f"iotpipe-bridge-{device}",
            self.translator.status(device, online=False),
            self.counters,
            self.outbox,
        )
        publisher.handle(topics.topic(self.config.base_topic, device, "cmd"), self._on_command)
        if self.config.ha_prefix is not None:
            publisher.handle(discovery.birth_topic(self.config.ha_prefix), self._on_ha_birth)
        publisher.start()
        changed(log, "publishing", device=device, broker=self.config.mqtt.broker)
        return publisher

    def _send(self, topic: str, payload: bytes) -> int | None:
        publisher = self.device.publisher
        return None if publisher is None else publisher.send(topic, payload)

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
            return
        self.counters.inc("commands")
        if self.serial.source is None:
            self.device.reply_error(route, request.client_id, f"{device} is offline (no port)")
            return
        self.device.act(self.router.submit(request, time.monotonic()))

    def _on_ha_birth(self, msg: MQTTMessage) -> None:
        if msg.payload == topics.ONLINE:
            changed(log, "home_assistant_online", then="publishing every retained topic again")
            for publisher in self._publishers():
                publisher.republish_retained()

    # --- the serial port --------------------------------------------------------------
    def _read_port(self) -> None:
        try:
            chunk = self.serial.read()
        except (PortLost, OSError) as exc:
            self.serial.lost(exc)
            self.device.set_online(False, "port closed")
            self.device.act(self.router.fail_all("the board's port closed"))
            return
        now = time.time()  # after the read: it may have waited for the line
        lines = self.serial.splitter.feed(chunk)
        self._store(lambda: self.device.handle_all(lines, now))

    def _store(self, produce: Callable[[], list[tuple[str, bytes]]]) -> None:
        """Run ``produce`` (which admits readings) and store what it made in one commit."""
        continuity = self.device.continuity
        if self.outbox is None or self.storage is None:  # QoS 0: nothing to commit
            batch = produce()
            continuity.committed()
            if batch and self.device.publisher is not None:
                self.device.publisher.send_many(batch, qos=0)
                self.counters.inc("published", n=len(batch))
            return
        if self.storage.spool is None and self.storage.due(time.monotonic()):
            self.storage.open()
        self._sync_spool()
        continuity.storing = self.storage.due(time.monotonic())
        continuity.begin()
        batch = produce()
        marks = continuity.pending_marks()
        if self.outbox.put(batch, continuity.staged_seen(), marks):
            continuity.committed()
        else:
            continuity.rollback(SPOOL_FULL)

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
    def _housekeeping(self, now: float) -> None:
        actions = self.router.expire(now)
        self.counters.inc("command_timeouts", n=len(actions.replies))
        self.device.act(actions)
        self.device.check_quiet()
        continuity = self.device.continuity
        if continuity.replay is not None:
            self._store(lambda: self._expired_replay(now))
        elif self.storage is not None and self.storage.spool is None:
            self._store(list)  # retries opening the spool when due

    def _expired_replay(self, now: float) -> list[tuple[str, bytes]]:
        self.device.continuity.expire(now, self.device.id)
        events: list[tuple[str, bytes]] = self.device.gap_events()
        return events

    def _gauges(self) -> dict[str, Gauge]:
        gauges = {
            "mqtt_connected": Gauge("Whether publishing to the broker works (1 or 0)", self._online)
        }
        storage = self.storage
        if storage is not None:
            gauges["spool_rows"] = Gauge(
                "Readings in the spool not yet acknowledged",
                lambda: self.outbox.backlog if self.outbox else 0,
            )
            gauges["spool_bytes"] = Gauge(
                "Size of the spool file on disk",
                lambda: storage.spool.size if storage.spool else 0,
            )
            gauges["spool_writable"] = Gauge(
                "Whether the spool can store readings (1 or 0)", lambda: float(storage.writable)
            )
        return gauges

    def _online(self) -> float:
        return float(self.device.publisher is not None and self.device.publisher.connected.is_set())
