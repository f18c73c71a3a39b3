"""The bridge's policy: keep the port open, validate each line, publish what is good.

Mechanism lives elsewhere (``lines`` reads the port, ``publisher`` talks MQTT,
``translate`` maps lines to messages); this loop decides about retries and state. A bad
line is counted and logged with its reason and never stops the loop; a lost port marks
the device offline and is retried with backoff until it returns.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import serial
from iotpipe.bridge.lines import LineSplitter, TooLong, open_port, read_lines
from iotpipe.bridge.publisher import Publisher
from iotpipe.bridge.translate import Translator

from iotpipe import wire
from iotpipe.counters import Counters
from iotpipe.endpoints import BrokerURL

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0
# The board's hello is usually gone by the time the port is opened (the port's input
# buffer is flushed on open), so the bridge asks for the same description.
META_REQUEST_ID = "iotpipe-bridge-meta"


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    serial: str
    baud: int
    broker: BrokerURL
    base_topic: str
    device_id: str | None = None


class Bridge:
    def __init__(self, config: BridgeConfig) -> None:
        self.config = config
        self.counters = Counters("iotpipe_bridge")
        self.translator = Translator(config.base_topic)
        self.publisher: Publisher | None = None
        self.device: str | None = config.device_id
        self.stopping = threading.Event()

    def run(self) -> None:
        if self.device:
            self._start_publisher(self.device)
        backoff = BACKOFF_START_S
        while not self.stopping.is_set():
            try:
                port = open_port(self.config.serial, self.config.baud)
            except (serial.SerialException, OSError, ValueError) as exc:
                self.counters.inc("port_errors", "open")
                log.warning(
                    "cannot open %s (%s); retrying in %.1f s", self.config.serial, exc, backoff
                )
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            backoff = BACKOFF_START_S
            log.info("reading %s at %d baud", self.config.serial, self.config.baud)
            try:
                port.write(wire.encode_command(META_REQUEST_ID, "info"))
                self._pump(port)
            except (serial.SerialException, OSError) as exc:
                self.counters.inc("port_errors", "read")
                log.warning(
                    "lost %s (%s); the device is offline until it returns", self.config.serial, exc
                )
                self._set_online(False)
            finally:
                port.close()
        self._shut_down()

    def stop(self) -> None:
        self.stopping.set()

    def _pump(self, port: serial.SerialBase) -> None:
        splitter = LineSplitter()
        while not self.stopping.is_set():
            for raw in read_lines(port, splitter):
                self.handle(raw, time.time())

    def handle(self, raw: bytes, received_at: float) -> None:
        self.counters.inc("lines")
        if isinstance(raw, TooLong):
            self._reject("too_long", f"line over {wire.MAX_LINE_BYTES} bytes", raw)
            return
        try:
            line = wire.parse_line(raw)
            if isinstance(line, wire.Answer) and line.id == META_REQUEST_ID and line.ok:
                line = wire.hello_from_info(line.result)
        except wire.LineRejected as exc:
            self._reject(exc.reason, exc.detail, raw)
            return
        device = getattr(line, "device", None) or self.device
        if device is None:
            self._reject("no_device_yet", "an answer before the board said who it is", raw)
            return
        if self.publisher is None:
            self._start_publisher(device)
        if device != self.device:
            log.warning(
                "the board on %s now says it is %r (was %r)",
                self.config.serial,
                device,
                self.device,
            )
            self.device = device
        self._set_online(True)
        message = self.translator.message(line, device, received_at)
        assert self.publisher is not None
        if isinstance(line, wire.Hello):
            self.publisher.keep_retained(message)
        else:
            self.publisher.publish(message)
        self.counters.inc("accepted", type(line).__name__.lower())

    def _reject(self, reason: str, detail: str, raw: bytes) -> None:
        self.counters.inc("rejected", reason)
        # DEBUG, not WARNING: a board at the wrong baud rate produces one per line.
        log.debug(
            "skipped a line from %s (%s: %s): %r", self.config.serial, reason, detail, raw[:80]
        )
        if self.counters.get("rejected", reason) in (1, 10, 100, 1000, 10_000):
            log.warning(
                "skipped %d lines from %s so far for %s, last: %s",
                self.counters.get("rejected", reason),
                self.config.serial,
                reason,
                detail,
            )

    def _start_publisher(self, device: str) -> None:
        self.device = device
        will = self.translator.status(device, online=False)
        self.publisher = Publisher(
            self.config.broker, f"iotpipe-bridge-{device}", will, self.counters
        )
        self.publisher.start()
        self._online: bool | None = None

    def _set_online(self, online: bool) -> None:
        if self.publisher is None or self.device is None or self._online == online:
            return
        self._online = online
        self.publisher.keep_retained(self.translator.status(self.device, online))
        log.info("device %s is %s", self.device, "online" if online else "offline")

    def _shut_down(self) -> None:
        if self.publisher is not None and self.device is not None:
            self.publisher.stop(self.translator.status(self.device, online=False))
        log.info("bridge stopped; counters: %s", self.counters.snapshot())
