"""The bridge: every port of the host in one process, and the one loop that runs them.

Each port is a ``link`` (its board's state, spool and MQTT connection, whose will says
that board is offline); the bridge's own connection carries the bridge's status. One
thread waits in ``select`` on every port and every MQTT socket and does what is ready —
no thread hands a message to another, so nothing fights for the GIL per reading. Only a
blocking MQTT connect and the optional metrics server have threads. A bad line is
counted and never stops the loop; a lost port marks its device offline and is retried
with backoff until it returns, while the other ports go on. With ``--serial auto`` the
USB ports are looked at again every ``ports.SCAN_S`` seconds and a board that appears
gets a link of its own. A link whose handling raises is logged and the others carry on.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from paho.mqtt.client import MQTTMessage

from iotpipe import topics
from iotpipe.bridge import ports
from iotpipe.bridge.link import Link, LinkConfig
from iotpipe.bridge.metrics import MetricsServer, bridge_registry
from iotpipe.bridge.names import spool_for
from iotpipe.bridge.outbox import DRAIN_TICK_S, KEEP_ACKED_S
from iotpipe.bridge.publisher import MqttOptions, Publisher
from iotpipe.bridge.statelog import changed
from iotpipe.bridge.translate import Translator
from iotpipe.counters import Counters
from iotpipe.endpoints import HostPort
from iotpipe.exposition import Gauge
from iotpipe.mqttwire import discovery

log = logging.getLogger(__name__)

TICK_S = 0.25


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    serial: tuple[str, ...]  # each a port spec, or `auto` for every board found
    baud: int
    mqtt: MqttOptions
    base_topic: str
    name: str
    device_id: str | None = None  # only with one port
    spool_root: Path | None = None  # DATA/spool: each port's spool in a directory of it
    spool_dir: Path | None = None  # the one port's spool, as --spool named it
    spool_max_bytes: int = 100 * 2**20
    qos: int = 1
    drain_rate: float = 500.0
    keep_acked_s: float = KEEP_ACKED_S
    request_timeout: float = 4.0
    ha_prefix: str | None = discovery.DEFAULT_PREFIX
    metrics: HostPort | None = None


class Bridge:
    def __init__(self, config: BridgeConfig) -> None:
        if config.qos == 1 and config.spool_dir is None and config.spool_root is None:
            raise ValueError("QoS 1 needs a spool directory")
        self.config = config
        self.counters = Counters("iotpipe_bridge")
        self.stopping = threading.Event()
        self.translator = Translator(config.base_topic)
        self.bridge_status = topics.bridge_status(config.base_topic, config.name)
        self.presence = Publisher(
            config.mqtt,
            f"iotpipe-bridge-{config.name}",
            self.translator.bridge_status(config.name, False),
            self.counters,
            persistent=False,
        )
        if config.ha_prefix is not None:  # each link's connection republishes its own
            self.presence.handle(discovery.birth_topic(config.ha_prefix), self._on_ha_birth)
        self.links: dict[str, Link] = {}
        self._auto = ports.AUTO in config.serial
        self._next_scan = 0.0
        self._said_none = False
        for spec in ports.expand(config.serial):
            self._add(spec)  # a spool that cannot be made is an error at start
        self.metrics = (
            MetricsServer(config.metrics, bridge_registry(self.counters, self._gauges()))
            if config.metrics
            else None
        )

    def _add(self, spec: str) -> Link:
        config = self.config
        spool = config.spool_dir
        if config.qos == 0:
            spool = None
        elif spool is None and config.spool_root is not None:
            spool = spool_for(config.spool_root, spec, spec not in config.serial)
        link = Link(
            LinkConfig(
                spec=spec,
                baud=config.baud,
                mqtt=config.mqtt,
                base_topic=config.base_topic,
                bridge_status=self.bridge_status,
                spool_dir=spool,
                spool_max_bytes=config.spool_max_bytes,
                drain_rate=config.drain_rate,
                keep_acked_s=config.keep_acked_s,
                request_timeout=config.request_timeout,
                ha_prefix=config.ha_prefix,
                device_id=config.device_id,
            ),
            self.counters,
        )
        self.links[spec] = link
        return link

    # --- lifecycle --------------------------------------------------------------------
    def run(self) -> None:
        self.presence.keep_retained(self.translator.bridge_status(self.config.name, True))
        self.presence.start()
        if self.metrics is not None:
            self.metrics.start()
        for link in self.links.values():
            link.start()
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
            if self._auto and now >= self._next_scan:
                self._next_scan = now + ports.SCAN_S
                self._scan()
            for link in list(self.links.values()):
                self._guarded(link, partial(link.open_if_due, now))
            connections = [publisher.connection for publisher in self._publishers()]
            readers: dict[int, Callable[[], None]] = {}
            writers: dict[int, Callable[[], None]] = {}
            for connection in connections:
                sock = connection.socket()
                if sock is not None:
                    readers[sock.fileno()] = connection.readable
                    if connection.want_write():
                        writers[sock.fileno()] = connection.writable
            for link in self.links.values():
                if link.serial.source is not None:
                    readers[link.serial.source.fileno()] = partial(
                        self._guarded, link, link.read_port
                    )
            hurry = any(link.hurry for link in self.links.values())
            hurry = hurry or any(c.connecting for c in connections)
            ready, writable, _ = select.select(
                list(readers), list(writers), [], DRAIN_TICK_S if hurry else TICK_S
            )
            for fd in writable:
                writers[fd]()
            for fd in ready:
                readers[fd]()
            for link in self.links.values():
                self._guarded(link, link.step)
            now = time.monotonic()
            for connection in connections:
                connection.tick(now)
            if now - last_tick >= TICK_S:
                last_tick = now
                for link in self.links.values():
                    self._guarded(link, partial(link.housekeeping, now))

    def _guarded(self, link: Link, work: Callable[[], None]) -> None:
        """A bug that one port's data trips is logged and counted; the other ports go on."""
        try:
            work()
        except Exception:
            self.counters.inc("link_errors")
            log.exception("handling %s failed; the other ports carry on", link.config.spec)

    def _scan(self) -> None:
        """`auto`: a link for each board plugged in since the last look."""
        found = ports.expand(self.config.serial)
        if not found and not self._said_none:  # once: a scan every few seconds
            self._said_none = True
            vendors = ports.known_vendors()
            changed(log, "port_waiting", logging.WARNING, spec=ports.AUTO, vendors=vendors)
        for spec in found:
            if spec in self.links:
                continue
            try:
                link = self._add(spec)
            except OSError as exc:  # its spool cannot be made; looked at again next scan
                self.links.pop(spec, None)
                changed(log, "port_skipped", logging.ERROR, spec=spec, error=exc)
                continue
            changed(log, "port_found", spec=spec)
            link.start()

    def _on_ha_birth(self, msg: MQTTMessage) -> None:
        if msg.payload == topics.ONLINE:
            self.presence.republish_retained()

    def _publishers(self) -> list[Publisher]:
        found = [self.presence]
        for link in self.links.values():
            found.extend(link.publishers())
        return found

    def _shut_down(self) -> None:
        for link in self.links.values():
            link.shut_down()
        self.presence.stop(self.translator.bridge_status(self.config.name, False))
        if self.metrics is not None:
            self.metrics.stop()
        log.info("bridge stopped; counters: %s", self.counters.snapshot())

    # --- metrics ----------------------------------------------------------------------
    def _gauges(self) -> dict[str, Gauge]:
        """Summed over the ports (the spool's); 1 only if every port's is (mqtt, writable)."""
        links = self.links.values
        gauges = {
            "mqtt_connected": Gauge(
                "Whether publishing to the broker works for every port's board (1 or 0)",
                lambda: float(bool(links()) and all(link.online for link in links())),
            )
        }
        if self.config.qos == 1:
            gauges["spool_rows"] = Gauge(
                "Readings in the spools not yet acknowledged",
                lambda: sum(link.outbox.backlog for link in links() if link.outbox),
            )
            gauges["spool_bytes"] = Gauge(
                "Size of the spool files on disk",
                lambda: sum(
                    link.storage.spool.size
                    for link in links()
                    if link.storage and link.storage.spool
                ),
            )
            gauges["spool_writable"] = Gauge(
                "Whether every port's spool can store readings (1 or 0)",
                lambda: float(all(link.storage.writable for link in links() if link.storage)),
            )
        return gauges
