"""What handling a line (or a command, or a tick) asks for, as values: pure, no I/O.

``device`` parses and keeps state; it never holds an MQTT client or the port. It says
what must happen in these values, in order, and ``link`` (the one place that does I/O for
a port) carries them out: a new MQTT connection for a device that appeared, retained
state, an answer, bytes for the board. Readings and events are not effects: they come
back from ``Device.handle_all`` to go through the spool.
"""

from __future__ import annotations

from dataclasses import dataclass

from iotpipe.bridge.translate import Message


@dataclass(frozen=True, slots=True)
class Connect:
    """This port's board is ``device`` now: its own MQTT connection, its will its status."""

    device: str


@dataclass(frozen=True, slots=True)
class Retain:
    """Publish now and after every reconnect (status, meta, discovery)."""

    message: Message


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish once if connected (answers, reports of dropped readings)."""

    message: Message
    correlation: bytes | None = None


@dataclass(frozen=True, slots=True)
class Write:
    """Bytes for the board (a command, a replay request)."""

    data: bytes


Effect = Connect | Retain | Publish | Write
