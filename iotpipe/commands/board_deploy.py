"""`iotpipe board deploy`: the flags, and the steps in order (how each is done:
``iotpipe/board/deploy.py``; the Wi-Fi board's check on the broker: ``iotpipe/board/verify.py``)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from iotpipe.board import verify, wifi
from iotpipe.board.deploy import (
    BOARDS,
    MPY_VERSION,
    TRANSPORTS,
    ask_info,
    board_ca,
    build_config,
    copy_and_restart,
    have_mpy_cross,
    stage_files,
    stop_program,
    wait_for_port,
)
from iotpipe.errors import UserError
from iotpipe.settings import add_settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", required=True, help="the board's serial port (path or URL)")
    parser.add_argument(
        "--board", choices=BOARDS, help="board name for the config (default: the port's own)"
    )
    add_settings(parser, "device-id", "log-level")
    parser.add_argument("--interval", type=_seconds, metavar="S", help="seconds between readings")
    # Not --config: that is iotpipe's own TOML settings file, taken by every command.
    parser.add_argument(
        "--board-config",
        type=Path,
        metavar="FILE",
        help="JSON with more keys for the board's config.json (sensors, …)",
    )
    parser.add_argument("--no-mpy", action="store_true", help="copy .py source, never .mpy")
    parser.add_argument(
        "--transport",
        choices=TRANSPORTS,
        help="serial: readings over USB to a bridge (the default); mqtt: the board joins "
        "Wi-Fi and publishes to the broker itself (docs/firmware.md)",
    )
    add_settings(parser, "wifi-ssid", "wifi-password", "broker", "base-topic", "mqtt-ca")
    parser.add_argument(
        "--broker-data",
        type=Path,
        metavar="DIR",
        help="mqtt: the broker's --data directory here; the board's own login is made (or "
        "reused) there and a running broker reloaded",
    )
    parser.add_argument(
        "--board-login",
        type=Path,
        metavar="FILE",
        help="mqtt: the board's login file, made by `iotpipe board login`",
    )
    parser.add_argument(
        "--allow-loopback",
        action="store_true",
        help="mqtt: accept a --broker on 127.0.0.1/localhost (only a virtual board reaches it)",
    )
    parser.add_argument(
        "--wait",
        type=verify.wait_seconds,
        default=verify.WAIT_S,
        metavar="S",
        help="mqtt with --broker-data: seconds to wait for the board on the broker "
        f"(default {verify.WAIT_S:g}; 0: do not check)",
    )


def _seconds(text: str) -> float:
    value = float(text)
    if not 0.001 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r} must be seconds from 0.001 to 86400")
    return value


def run(args: argparse.Namespace) -> int:
    config = build_config(args)
    ca = board_ca(args, config)
    with verify.Check(config, args.broker_data, args.wait, ca) as check:
        print(f"stopping the program on {args.port} …", flush=True)
        mpy_version = stop_program(args.port)
        wait_for_port(args.port)
        check.board_stopped()
        compile_mpy = not args.no_mpy and mpy_version == MPY_VERSION and have_mpy_cross()
        with tempfile.TemporaryDirectory(prefix="iotpipe-deploy-") as tmp:
            files = stage_files(Path(tmp), config, compile_mpy, ca)
            kind = ".mpy" if compile_mpy else ".py"
            also = f", {wifi.CA_FILE} (the CA it trusts)" if ca else ""
            print(f"copying {len(files) - 1 - bool(ca)} firmware files ({kind}){also} and "
                  "config.json …", flush=True)  # fmt: skip
            copy_and_restart(args.port, files)
        if check.mqtt:  # a Wi-Fi board answers on the broker, not on the serial port
            return check.finish(args.port)
    hello = ask_info(args.port)
    print(
        f"{hello.device} runs iotpipe firmware {hello.fw} on {hello.board}: "
        f"sensors {', '.join(hello.sensors) or 'none'}, "
        f"a reading every {hello.interval_ms / 1000:g} s"
    )
    for key, got in (("device_id", hello.device), ("interval_ms", hello.interval_ms)):
        if key in config and config[key] != got:
            raise UserError(f"the board says {key} {got!r}, not {config[key]!r} as deployed")
    return 0
