"""`iotpipe board ports`: the serial ports that look like MicroPython boards.

A board is recognised by the USB vendor id of its USB-serial chip or native USB. The
table and :func:`board_ports` are shared: the bridge's ``--serial auto`` uses them too.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from iotpipe.errors import UserError
from iotpipe.settings import add_settings

USB_VENDORS: dict[int, str] = {
    0x303A: "Espressif (native USB)",
    0x10C4: "Silicon Labs CP210x",
    0x1A86: "WCH CH340",
    0x0403: "FTDI",
    0x2E8A: "Raspberry Pi",
    0xF055: "pyboard",
}


@dataclass(frozen=True, slots=True)
class BoardPort:
    device: str
    vid: int | None
    pid: int | None
    vendor: str
    description: str
    serial_number: str | None


def looks_like_board(vid: int | None) -> bool:
    return vid in USB_VENDORS


def _comports() -> Sequence[Any]:
    from serial.tools import list_ports

    return list(list_ports.comports())


def board_ports(
    comports: Callable[[], Sequence[Any]] | None = None, everything: bool = False
) -> list[BoardPort]:
    """Ports whose vendor id is in :data:`USB_VENDORS` (every port with ``everything``),
    sorted by device name so that "the first board" means the same one each time."""
    found = []
    for port in (comports or _comports)():
        vid = getattr(port, "vid", None)
        if everything or looks_like_board(vid):
            found.append(
                BoardPort(
                    device=port.device,
                    vid=vid,
                    pid=getattr(port, "pid", None),
                    vendor=USB_VENDORS.get(vid, "unknown") if vid is not None else "—",
                    description=getattr(port, "description", "") or "",
                    serial_number=getattr(port, "serial_number", None),
                )
            )
    return sorted(found, key=lambda p: p.device)


def describe(port: BoardPort) -> str:
    ids = f"{port.vid:04x}:{port.pid or 0:04x}" if port.vid is not None else "—"
    serial = f"  serial {port.serial_number}" if port.serial_number else ""
    return f"{port.device}  {ids}  {port.vendor}  {port.description}{serial}"


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, "log-level")
    parser.add_argument(
        "--all", action="store_true", help="list every serial port, not only known board vendors"
    )


def run(args: argparse.Namespace) -> int:
    ports = board_ports(everything=args.all)
    if not ports:
        known = ", ".join(f"{vid:04x} {name}" for vid, name in USB_VENDORS.items())
        raise UserError(
            f"no serial port looks like a MicroPython board (USB vendors {known}) — "
            "plug it in with a data (not charge-only) cable, or try `iotpipe board ports --all`"
        )
    for port in ports:
        print(describe(port))
    return 0
