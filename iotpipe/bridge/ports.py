"""Which serial port ``--serial`` means, looked up again at every (re)open.

``--serial`` is one of:

- a pyserial URL (``socket://host:port``, ``rfc2217://…``), used as it is;
- a path (``/dev/ttyUSB0``, ``/dev/serial/by-id/…``, a pty link);
- ``auto``: the first port whose USB vendor id is a chip that MicroPython boards use;
- anything else: a USB serial number, so a board is found again when it re-enumerates as
  another ``/dev/ttyUSBn``.

The vendor ids and the port listing are ``iotpipe/serialports.py``'s, which is also behind
`iotpipe board ports`, so `auto` here and that list always agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from iotpipe.serialports import USB_VENDORS, board_ports

AUTO = "auto"


class PortNotFound(LookupError):
    """Nothing plugged in matches ``--serial`` right now (it may appear later)."""


def is_url(spec: str) -> bool:
    return "://" in spec


def is_path(spec: str) -> bool:
    return spec.startswith(("/", ".", "COM")) or "\\" in spec


def resolve(spec: str, comports: Callable[[], Sequence[Any]] | None = None) -> str:
    """The path or URL to open for ``spec`` now, or raise :class:`PortNotFound`."""
    if is_url(spec) or is_path(spec):
        return spec
    if spec == AUTO:
        boards = board_ports(comports)
        if boards:
            return boards[0].device
        known = ", ".join(f"{vid:04x} {name}" for vid, name in USB_VENDORS.items())
        raise PortNotFound(f"no USB serial port of a known board vendor ({known})")
    for port in board_ports(comports, everything=True):
        if port.serial_number == spec:
            return port.device
    raise PortNotFound(f"no USB serial port with serial number {spec!r}")
