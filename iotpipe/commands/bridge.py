"""`iotpipe bridge --serial PORT [--serial PORT …] --broker URL`: one bridge for every board."""

from __future__ import annotations

import argparse
import signal
import sqlite3
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


def run(args: argparse.Namespace) -> int:
    from iotpipe.bridge.daemon import Bridge, BridgeConfig
    from iotpipe.bridge.names import bridge_name
    from iotpipe.bridge.ports import AUTO
    from iotpipe.bridge.publisher import MqttOptions
    from iotpipe.mqttlogin import fill_credentials

    fill_credentials(args, "bridge")

    serial = tuple(dict.fromkeys(args.serial))
    one = len(serial) == 1 and serial[0] != AUTO
    if not one and (args.spool or args.device_id):
        raise UserError(
            "--spool and --device-id name one port's; with several ports (or auto) each "
            "port's spool is DATA/spool/PORT-NAME — use --data, and let each board say its id"
        )
    config = BridgeConfig(
        serial=serial,
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
        name=bridge_name(serial),
        device_id=args.device_id,
        spool_root=Path(args.data) / "spool",
        spool_dir=args.spool,
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
            f"cannot start the bridge: {exc} — check that --spool "
            f"{config.spool_dir or config.spool_root} is a writable directory{metrics}"
        ) from None
    signal.signal(signal.SIGTERM, lambda signum, frame: bridge.stop())
    signal.signal(signal.SIGINT, lambda signum, frame: bridge.stop())
    bridge.run()
    return 0
