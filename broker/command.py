"""`iotpipe broker`: run the real Mosquitto with the project's configuration.

The listener and the persistence path differ per machine, so they are written into a small
main file in the data directory, which includes the shared settings in ``broker/conf.d``.
Mosquitto then replaces this process (``exec``), so it gets SIGINT/SIGTERM itself and
saves its state on the way out, exactly as it does under systemd or docker.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
from pathlib import Path

from iotpipe.errors import UserError
from iotpipe.settings import add_settings

CONF_DIR = Path(__file__).resolve().parent / "conf.d"


def find_mosquitto(name: str) -> str:
    # Debian installs it in /usr/sbin, which an ordinary user's PATH often lacks.
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    found = shutil.which(name, path=search)
    if found is None:
        raise UserError(
            f"mosquitto is not installed (no {name!r} found) — install it with "
            "`sudo apt-get install mosquitto` (Debian/Ubuntu) or name it with --mosquitto"
        )
    return found


def render_config(port: int, bind: str, data: Path) -> str:
    # When started as root Mosquitto switches to the user named here; naming the current
    # user keeps the data directory writable (an unprivileged user is not switched at all).
    return (
        "# Written by `iotpipe broker` at every start; edit broker/conf.d instead.\n"
        f"user {getpass.getuser()}\n"
        f"listener {port} {bind}\n"
        f"persistence_location {data.resolve()}/\n"
        "log_dest stderr\n"
        f"include_dir {CONF_DIR}\n"
    )


def write_config(port: int, bind: str, data: Path) -> Path:
    try:
        data.mkdir(parents=True, exist_ok=True)
        path = data / "mosquitto.conf"
        path.write_text(render_config(port, bind, data))
    except OSError as exc:
        raise UserError(
            f"cannot write the broker config in {data}: {exc.strerror} — "
            "choose another --data directory"
        ) from None
    return path


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings(parser, "port", "bind", "data", "mosquitto", "log-level")


def run(args: argparse.Namespace) -> int:
    binary = find_mosquitto(args.mosquitto)
    config = write_config(args.port, args.bind, args.data)
    os.execv(binary, [binary, "-c", str(config)])
