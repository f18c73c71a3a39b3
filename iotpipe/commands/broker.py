"""`iotpipe broker`: write the configuration (``iotpipe/broker/mosquitto.py``), then
become Mosquitto (``exec``), so it gets SIGINT/SIGTERM itself and saves its state on the way
out, exactly as it does under systemd or docker. ``--setup-only`` writes the files and exits,
for a Mosquitto started by something else (docker compose's init service)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from iotpipe.broker import auth
from iotpipe.broker.mosquitto import find_mosquitto, prepare, write_config
from iotpipe.settings import add_settings


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings(
        parser, "port", "bind", "data", "base-topic", "ha-prefix", "insecure", "tls-port",
        "tls-name", "mosquitto", "log-level",
    )  # fmt: skip
    # An action, not a setting: IOTPIPE_SETUP_ONLY in a shared .env would stop every broker.
    parser.add_argument(
        "--setup-only",
        action="store_true",
        help="write the credentials, password file, ACL (and TLS files) into --data and exit, "
        "without Mosquitto — for a broker that runs elsewhere, e.g. docker compose's",
    )


def run(args: argparse.Namespace) -> int:
    if args.setup_only:
        made, _listener = prepare(args)
        _say_where(made, args.data)
        return 0
    binary = find_mosquitto(args.mosquitto)
    config, made = write_config(args)
    if args.insecure:
        print(
            "iotpipe broker: INSECURE mode — no passwords, anyone may publish and read",
            file=sys.stderr,
            flush=True,
        )
    _show_once(made, args.data)
    os.execv(binary, [binary, "-c", str(config)])


def _say_where(made: list[auth.Credentials], data: Path) -> None:
    """Setup runs as a one-shot job whose log is kept (`docker compose logs`): name the
    users and the folder, never the passwords."""
    folder = auth.credentials_dir(data).resolve()
    users = ", ".join(c.user for c in made) or "none"
    print(
        f"iotpipe broker: set up {data}; MQTT users made now: {users}; passwords in {folder}",
        file=sys.stderr,
        flush=True,
    )


def _show_once(made: list[auth.Credentials], data: Path) -> None:
    """The passwords are printed this once; afterwards they are only in the 0600 files."""
    if not made:
        return
    folder = auth.credentials_dir(data).resolve()
    lines = [f"iotpipe broker: created MQTT users (passwords also in {folder}, mode 0600):"]
    lines += [f"  {c.role:<9} user {c.user}  password {c.password}" for c in made]
    print("\n".join(lines), file=sys.stderr, flush=True)
