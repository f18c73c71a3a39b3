"""Names the bridge derives from its ports: stable across starts, safe in topics and paths.

A port's spool lives at ``DATA/spool/<port name>`` — the layout one bridge per port used,
so a bridge serving several ports finds each port's spool where it was. The one change:
`--serial auto` used to mean the first board found, and its spool was named for ``auto``;
now each board ``auto`` finds has its own, and the first one found takes over that old
spool (``spool_for``), so readings it held are still delivered.
"""

from __future__ import annotations

import logging
import re
import socket
import zlib
from collections.abc import Sequence
from pathlib import Path

from iotpipe.bridge.ports import AUTO
from iotpipe.bridge.statelog import changed

log = logging.getLogger(__name__)


def port_name(serial: str) -> str:
    """A short name for the port, safe in topics and file names, the same at each start:
    the last part of the path or URL plus a hash of the whole (two `tty` links differ)."""
    last = re.sub(r"[^A-Za-z0-9_.-]", "_", serial.rstrip("/").rsplit("/", 1)[-1])[:24]
    return f"{last.strip('._-') or 'port'}-{zlib.crc32(serial.encode()) & 0xFFFF:04x}"


def bridge_name(serials: Sequence[str]) -> str:
    """The bridge's own name (its status topic): the host and the ports it was told to
    serve — for one ``--serial`` the name one bridge per port had."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:24] or "host"
    return f"{host}-{port_name(','.join(serials))}"


def spool_for(root: Path, spec: str, found_by_auto: bool) -> Path:
    """The spool directory of the port ``spec`` under ``root`` (DATA/spool)."""
    own = root / port_name(spec)
    legacy = root / port_name(AUTO)
    if found_by_auto and not own.exists() and legacy.is_dir():
        legacy.rename(own)
        changed(log, "spool_adopted", spec=spec, was=legacy, now=own)
    return own
