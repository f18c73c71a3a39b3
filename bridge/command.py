"""`iotpipe bridge --serial PORT --broker URL`."""

from __future__ import annotations

import argparse
import signal

from iotpipe.settings import add_settings


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings(
        parser,
        "serial",
        "baud",
        "broker",
        "base-topic",
        "device-id",
        "log-level",
        required=("serial",),
    )


def run(args: argparse.Namespace) -> int:
    from iotpipe.bridge.daemon import Bridge, BridgeConfig

    bridge = Bridge(
        BridgeConfig(args.serial, args.baud, args.broker, args.base_topic, args.device_id)
    )
    signal.signal(signal.SIGTERM, lambda signum, frame: bridge.stop())
    signal.signal(signal.SIGINT, lambda signum, frame: bridge.stop())
    bridge.run()
    return 0
