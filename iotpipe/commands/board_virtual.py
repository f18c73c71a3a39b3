"""`iotpipe board virtual`: the firmware under the MicroPython unix port, behind a pty at
``--link`` or publishing to ``--broker`` itself (the board itself: ``iotpipe/board/virtual.py``)."""

from __future__ import annotations

import argparse
import logging
import signal
import tempfile
import zlib
from pathlib import Path

from iotpipe.board.virtual import (
    Link,
    Stop,
    find_micropython,
    mqtt_config,
    power,
    prepare_filesystem,
    raise_stop,
    serve,
)
from iotpipe.board.wifi import CA_FILE, ca_der
from iotpipe.errors import UserError
from iotpipe.settings import add_settings

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, "link", "rate", "device-id", "log-level")
    parser.add_argument(
        "--fs",
        type=Path,
        default=None,
        metavar="DIR",
        help="the board's flash directory (default: a fresh temporary one)",
    )
    parser.add_argument(
        "--transport",
        choices=("serial", "mqtt"),
        default="serial",
        help="serial: behind a pty at --link (default); mqtt: publishes to --broker itself, "
        "as a board on Wi-Fi does",
    )
    add_settings(parser, "broker", "base-topic", "mqtt-user", "mqtt-password", "mqtt-ca")
    parser.add_argument(
        "--deep-sleep",
        action="store_true",
        help="mqtt: battery mode — wake, read, publish, deep sleep for the interval",
    )
    parser.add_argument(
        "--ring-max",
        type=int,
        default=None,
        metavar="N",
        help="serial: recent readings the board keeps for a `replay` (default: the port's, "
        "docs/protocol.md)",
    )
    parser.add_argument(
        "--buffer-max",
        type=int,
        default=60,
        metavar="N",
        help="mqtt: readings kept while the broker is unreachable (default: 60)",
    )


def run(args: argparse.Namespace) -> int:
    binary = find_micropython()
    device_id = args.device_id or "virtual"
    interval_ms = max(1, round(1000 / args.rate))
    signal.signal(signal.SIGTERM, raise_stop)
    if args.transport == "mqtt":
        return run_mqtt(args, binary, device_id, interval_ms)
    if args.link is None:
        raise UserError("give --link PATH, where the virtual board's serial port appears")
    with tempfile.TemporaryDirectory(prefix="iotpipe-board-") as tmp:
        root = args.fs or Path(tmp)
        ring = {} if args.ring_max is None else {"ring_max": args.ring_max}
        prepare_filesystem(root, device_id, interval_ms, ring)
        link = Link(args.link)
        unique_id = "%06x" % (zlib.crc32(device_id.encode()) & 0xFFFFFF)
        try:
            serve(link, binary, root, unique_id)
        except (Stop, KeyboardInterrupt):
            log.info("virtual board %s stopped", device_id)
        finally:
            link.close()
    return 0


def run_mqtt(args: argparse.Namespace, binary: str, device_id: str, interval_ms: int) -> int:
    with tempfile.TemporaryDirectory(prefix="iotpipe-board-") as tmp:
        root = args.fs or Path(tmp)
        prepare_filesystem(root, device_id, interval_ms, mqtt_config(args))
        if args.broker.tls:
            (root / CA_FILE).write_bytes(ca_der(args.mqtt_ca))
        log.info("virtual board %s publishing to %s itself", device_id, args.broker)
        try:
            power(binary, root)
        except (Stop, KeyboardInterrupt):
            log.info("virtual board %s stopped", device_id)
    return 0
