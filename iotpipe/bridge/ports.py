"""Which serial ports the bridge serves: finding them, and resolving each at every (re)open.

Each ``--serial`` is one of:

- a pyserial URL (``socket://host:port``, ``rfc2217://…``), used as it is;
- a path (``/dev/ttyUSB0``, ``/dev/serial/by-id/…``, a pty link);
- ``auto``: every port whose USB vendor id is a chip that MicroPython boards use, looked
  for again every ``SCAN_S`` seconds so a board plugged in later is served too;
- anything else: a USB serial number, so a board is found again when it re-enumerates as
  another ``/dev/ttyUSBn``.

A board found by ``auto`` is served under its USB serial number when it has one (it is
then followed to wherever it re-enumerates, and its spool is the one ``--serial NUMBER``
would use), else under its path. The vendor ids and the port listing are
``iotpipe/serialports.py``'s, which is also behind `iotpipe board ports` and doctor, so
`auto` here and that list always agree.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from iotpipe.serialports import USB_VENDORS, board_ports

AUTO = "auto"
SCAN_S = 3.0

Comports = Callable[[], Sequence[Any]] | None


class PortNotFound(LookupError):
    """Nothing plugged in matches ``--serial`` right now (it may appear later)."""


def is_url(spec: str) -> bool:
    return "://" in spec


def is_path(spec: str) -> bool:
    return spec.startswith(("/", ".", "COM")) or "\\" in spec


def resolve(spec: str, comports: Comports = None) -> str:
    """The path or URL to open for ``spec`` now, or raise :class:`PortNotFound`
    (``auto`` is not a port: :func:`expand` turns it into the ports found)."""
    if is_url(spec) or is_path(spec):
        return spec
    for port in board_ports(comports, everything=True):
        if port.serial_number == spec:
            return port.device
    raise PortNotFound(f"no USB serial port with serial number {spec!r}")


def known_vendors() -> str:
    return ", ".join(f"{vid:04x} {name}" for vid, name in USB_VENDORS.items())


def expand(specs: Sequence[str], comports: Comports = None) -> list[str]:
    """The port specs to serve now: each given one, and for ``auto`` one per board found
    (its serial number, else its path), without a port already named (a by-id link to
    it counts as named)."""
    wanted = list(dict.fromkeys(spec for spec in specs if spec != AUTO))
    if AUTO not in specs:
        return wanted
    named = set(wanted) | {os.path.realpath(spec) for spec in wanted if is_path(spec)}
    found = []
    for port in board_ports(comports):
        if named & {port.device, os.path.realpath(port.device), port.serial_number}:
            continue
        found.append(port.serial_number or port.device)
    return [*wanted, *dict.fromkeys(found)]
