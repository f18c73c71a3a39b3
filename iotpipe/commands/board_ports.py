"""`iotpipe board ports`: the serial ports that look like MicroPython boards.

Which ports those are is decided in ``iotpipe/serialports.py``, which the bridge's
``--serial auto`` asks too.
"""

from __future__ import annotations

import argparse

from iotpipe.errors import UserError
from iotpipe.serialports import USB_VENDORS, BoardPort, board_ports
from iotpipe.settings import add_settings


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
