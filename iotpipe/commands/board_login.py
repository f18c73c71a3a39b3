"""`iotpipe board login`: make (or find) one Wi-Fi board's broker login and tell the
broker (how: ``iotpipe/board/login.py``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from iotpipe.board.login import make_login
from iotpipe.settings import add_settings


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, "device-id", "data", "log-level", required=("device-id",))


def run(args: argparse.Namespace) -> int:
    _creds, path = make_login(Path(args.data), args.device_id)
    print(
        f"put it on the board with `iotpipe board deploy --transport mqtt --board-login {path} …`"
    )
    return 0
