"""Splitting what a serial port delivered into lines, each bounded: pure, no I/O.

pyserial's ``readline()`` costs one system call per byte; ``portio`` reads whatever is
waiting in one call and this splits it, so a fast board costs a few calls per batch.
"""

from __future__ import annotations

from iotpipe.wire import MAX_LINE_BYTES


class TooLong(bytes):
    """The first bytes of a line that went over the limit (the rest was discarded)."""


class LineSplitter:
    """Turns chunks of bytes into complete lines, bounding how much a line may hold."""

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self.limit = limit
        self._partial = bytearray()
        self._discarding = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines this chunk completes (a TooLong for each over the limit)."""
        lines = chunk.split(b"\n")
        rest = lines.pop()  # after the last newline: the start of a line still coming
        out: list[bytes] = []
        if lines:
            if self._discarding:  # the first piece ends a line already too long
                self._discarding = False
                out.append(TooLong(bytes(self._partial[:64])))
                lines[0] = b""
            elif self._partial:
                self._partial += lines[0]
                lines[0] = bytes(self._partial)
            self._partial.clear()
            limit = self.limit + 1  # +1: a trailing \r is allowed
            for line in lines:
                if len(line) > limit:
                    out.append(TooLong(line[:64]))
                elif line and not line.isspace():
                    out.append(line)
        self._keep(rest)
        return out

    def _keep(self, rest: bytes) -> None:
        if self._discarding:
            return
        self._partial += rest
        if len(self._partial) > self.limit + 1:
            self._discarding = True  # keep the head for the log, drop until the newline
            del self._partial[64:]
