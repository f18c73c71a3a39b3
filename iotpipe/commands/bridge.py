"""`iotpipe bridge --serial PORT --broker URL`."""

from __future__ import annotations

import argparse
import re
import signal
import socket
import sqlite3
import zlib
from pathlib import Path

from iotpipe.errors import UserError
from iotpipe.mqttlogin import SETTINGS as LOGIN_SETTINGS
from iotpipe.settings import add_settings

BRIDGE_SETTINGS = (
    "serial",
    "baud",
    "base-topic",
    "device-id",
    "data",
    "spool",
    "spool-max-mb",
    "qos",
    "drain-rate",
    "keep-acked",
    "request-timeout",
    "ha-discovery",
    "ha-prefix",
    "metrics",
    *LOGIN_SETTINGS,
    "log-level",
)


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, *BRIDGE_SETTINGS, required=("serial",))


def port_name(serial: str) -> str:
    """A short name for the port, safe in topics and file names, the same at each start:
    the last part of the path or URL plus a hash of the whole (two `tty` links differ)."""
    last = re.sub(r"[^A-Za-z0-9_.-]", "_", serial.rstrip("/").rsplit("/", 1)[-1])[:24]
    return f"{last.strip('._-') or 'port'}-{zlib.crc32(serial.encode()) & 0xFFFF:04x}"


def bridge_name(serial: str) -> str:
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:24] or "host"
    return f"{host}-{port_name(serial)}"


def run(args: argparse.Namespace) -> int:
    from iotpipe.bridge.daemon import Bridge, BridgeConfig
    from iotpipe.bridge.publisher import MqttOptions
    from iotpipe.mqttlogin import fill_credentials

    fill_credentials(args, "bridge")

    spool: Path = args.spool or Path(args.data) / "spool" / port_name(args.serial)
    config = BridgeConfig(
        serial=args.serial,
        baud=args.baud,
        mqtt=MqttOptions(
            args.broker,
            args.mqtt_user,
            args.mqtt_password,
            args.mqtt_ca,
            args.mqtt_cert,
            args.mqtt_key,
        ),
        base_topic=args.base_topic,
        name=bridge_name(args.serial),
        device_id=args.device_id,
        spool_dir=spool if args.qos == 1 else None,
        spool_max_bytes=int(args.spool_max_mb * 2**20),
        qos=args.qos,
        drain_rate=args.drain_rate,
        keep_acked_s=args.keep_acked,
        request_timeout=args.request_timeout,
        ha_prefix=args.ha_prefix if args.ha_discovery else None,
        metrics=args.metrics,
    )
    try:
        bridge = Bridge(config)
    except (OSError, sqlite3.Error) as exc:
        metrics = f" and that --metrics {args.metrics} is free" if args.metrics else ""
        raise UserError(
            f"cannot start the bridge: {exc} — check that --spool {config.spool_dir} "
            f"is a writable directory{metrics}"
        ) from None
    signal.signal(signal.SIGTERM, lambda signum, frame: bridge.stop())
    signal.signal(signal.SIGINT, lambda signum, frame: bridge.stop())
    bridge.run()
    return 0
