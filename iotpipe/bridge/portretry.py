"""Retry policy for one serial port: when to try opening it again, what a loss means.

``--serial`` is resolved again at each attempt (``ports``), so a board that comes back at
another path, or by its serial number anywhere, is found; attempts back off from 0.5 s to
10 s while it is away. The first failure of a run is a WARNING, the retries DEBUG: one
line per state change, not one per attempt.
"""

from __future__ import annotations

import logging
import time

import serial

from iotpipe.bridge import ports
from iotpipe.bridge.lines import LineSplitter
from iotpipe.bridge.portio import PortLost, PortSource, open_port
from iotpipe.bridge.statelog import changed
from iotpipe.counters import Counters

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0


class RetriedPort:
    def __init__(self, spec: str, baud: int, counters: Counters) -> None:
        self.spec = spec
        self.baud = baud
        self.counters = counters
        self.source: PortSource | None = None
        self.splitter = LineSplitter()
        self._next_try = 0.0
        self._backoff = BACKOFF_START_S

    def open_if_due(self, now: float) -> bool:
        """Try to open the port if it is closed and an attempt is due; True if it opened."""
        if self.source is not None or now < self._next_try:
            return False
        try:
            target = ports.resolve(self.spec)
            self.source = PortSource(open_port(target, self.baud))
        except (ports.PortNotFound, serial.SerialException, OSError, ValueError) as exc:
            self.counters.inc("port_errors", "open")
            level = logging.WARNING if self._backoff == BACKOFF_START_S else logging.DEBUG
            changed(log, "port_waiting", level, spec=self.spec, error=exc, retry_s=self._backoff)
            self._next_try = now + self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
            return False
        self._backoff = BACKOFF_START_S
        self.splitter = LineSplitter()  # a line cut by the loss is not joined to a new one
        self.counters.inc("port_opens")
        changed(log, "port_open", spec=self.spec, path=target, baud=self.baud)
        return True

    def read(self) -> bytes:
        if self.source is None:
            return b""
        return self.source.read()

    def write(self, data: bytes) -> None:
        if self.source is None:
            return
        try:
            self.source.write(data)
        except (serial.SerialException, OSError) as exc:  # the next read says it is gone
            log.debug("could not write to %s: %s", self.spec, exc)

    def lost(self, exc: PortLost | serial.SerialException | OSError) -> None:
        self.counters.inc("port_errors", "read")
        changed(log, "port_lost", logging.WARNING, spec=self.spec, error=exc)
        self.close()
        self._next_try = time.monotonic() + BACKOFF_START_S

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None
