"""Which serial ports look like MicroPython boards: by the USB vendor id of their
USB-serial chip or native USB.

In the shared layer because two parts ask it: `iotpipe board ports` lists what it finds,
and the bridge's ``--serial auto`` opens the first one, so the two always agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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
