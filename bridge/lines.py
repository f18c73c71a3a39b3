"""Reading the board's serial port as lines: mechanism only, it raises on failure.

pyserial's ``readline()`` costs one system call per byte; this reads whatever is waiting
in one call and splits it, so a fast board costs a few calls per batch of lines.
"""

from __future__ import annotations

from collections.abc import Iterator

import serial

from iotpipe.wire import MAX_LINE_BYTES

READ_TIMEOUT_S = 0.5


class TooLong(bytes):
    """The first bytes of a line that went over the limit (the rest was discarded)."""


def open_port(url: str, baud: int) -> serial.SerialBase:
    """A path (/dev/ttyUSB0, /dev/serial/by-id/…) or a pyserial URL (socket://, rfc2217://)."""
    return serial.serial_for_url(url, baudrate=baud, timeout=READ_TIMEOUT_S)


class LineSplitter:
    """Turns chunks of bytes into complete lines, bounding how much a line may hold."""

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self.limit = limit
        self._partial = bytearray()
        self._discarding = False

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                self._keep(chunk[start:])
                return
            piece = chunk[start:end]
            start = end + 1
            if self._discarding:
                self._discarding = False
                yield TooLong(bytes(self._partial[:64]))
            elif self._partial:
                self._partial += piece
                yield from self._complete(bytes(self._partial))
            else:
                yield from self._complete(piece)
            self._partial.clear()

    def _complete(self, line: bytes) -> Iterator[bytes]:
        if len(line) > self.limit + 1:  # +1: a trailing \r is allowed
            yield TooLong(line[:64])
        elif line.strip():
            yield line

    def _keep(self, rest: bytes) -> None:
        if self._discarding:
            return
        self._partial += rest
        if len(self._partial) > self.limit + 1:
            self._discarding = True  # keep the head for the log, drop until the newline
            del self._partial[64:]


def read_lines(port: serial.SerialBase, splitter: LineSplitter) -> Iterator[bytes]:
    """Lines as they arrive; an empty iteration means the read timed out (no data)."""
    waiting = port.in_waiting
    chunk = port.read(waiting or 1)
    if chunk:
        yield from splitter.feed(chunk)
