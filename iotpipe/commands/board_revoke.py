"""`iotpipe board revoke`: take a Wi-Fi board's broker login away, e.g. when it is lost.

The board's login file goes, the password file and ACL are written without it, and a
running broker reloads them: Mosquitto then closes the board's connection and refuses it
from then on (``tests/test_security.py``). The board's history stays in the dashboard.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from iotpipe.broker import auth, reload
from iotpipe.errors import UserError
from iotpipe.settings import add_settings


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, "device-id", "data", "log-level", required=("device-id",))


def run(args: argparse.Namespace) -> int:
    folder = auth.broker_data(Path(args.data))
    try:
        creds = auth.remove_board(folder, args.device_id)
    except OSError as exc:
        raise UserError(
            f"cannot rewrite the logins in {folder}: {exc.strerror} — run this as the user "
            "the broker runs as"
        ) from None
    print(f"removed the MQTT login of board {args.device_id} (user {creds.user})")
    print(reload.reload(folder, "the removal").message)
    print(
        "the password stays on the board's flash: if the board is lost, also change the "
        "Wi-Fi password it knows (docs/security.md)"
    )
    return 0
