"""The real Mosquitto's configuration for `iotpipe broker` (``iotpipe/commands/broker.py``).

The listener and the persistence path differ per machine, so they are written into a small
main file in the data directory, which includes the shared settings in ``iotpipe/broker/conf.d``.

Locked down unless ``--insecure on``: no anonymous clients, a password and an ACL per role
(``iotpipe/broker/auth.py``); ``--tls-port`` adds an mqtts:// listener (``iotpipe/broker/tls.py``).
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
from pathlib import Path

from iotpipe.broker import auth, tls
from iotpipe.errors import UserError

CONF_DIR = Path(__file__).resolve().parent / "conf.d"
SUB_OPTIONS = "mosquitto_sub"  # the name mosquitto_sub looks for in $XDG_CONFIG_HOME


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


def render_config(
    port: int, bind: str, data: Path, insecure: bool = False, tls_listener: str = ""
) -> str:
    # When started as root Mosquitto switches to the user named here; naming the current
    # user keeps the data directory writable (an unprivileged user is not switched at all).
    return (
        "# Written by `iotpipe broker` at every start; edit iotpipe/broker/conf.d instead.\n"
        f"user {getpass.getuser()}\n"
        f"listener {port} {bind}\n"
        f"{tls_listener}"
        f"persistence_location {data.resolve()}/\n"
        "log_dest stderr\n"
        f"include_dir {CONF_DIR}\n" + (_INSECURE if insecure else _locked(data))
    )


_INSECURE = (
    "# INSECURE development mode (--insecure on): anyone may connect, publish and read.\n"
    "allow_anonymous true\n"
)


def _locked(data: Path) -> str:
    # The pid file lets `iotpipe board login` make a running broker reload the password
    # file and the ACL with SIGHUP (iotpipe/broker/reload.py), so a new board needs no restart.
    return (
        "allow_anonymous false\n"
        f"password_file {data.resolve()}/passwd\n"
        f"acl_file {data.resolve()}/acl\n"
        f"pid_file {data.resolve()}/mosquitto.pid\n"  # iotpipe/broker/reload.py PID_FILE
    )


def prepare(args: argparse.Namespace) -> tuple[list[auth.Credentials], str]:
    """Everything in the data directory but the main file: the credentials, password file
    and ACL (unless insecure), the reader's mosquitto_sub options, the TLS files when asked.
    Returns the users made now and the TLS listener's lines."""
    data: Path = args.data
    made: list[auth.Credentials] = []
    secure = ""
    try:
        data.mkdir(parents=True, exist_ok=True)
        if not args.insecure:
            made = auth.ensure(data, args.base_topic, args.ha_prefix)
            _write_sub_options(data)
        if args.tls_port:
            names = [n.strip() for n in (args.tls_name or "").split(",") if n.strip()]
            secure = tls.listener(args.tls_port, args.bind, tls.ensure(data, names))
    except OSError as exc:
        raise _unwritable(data, exc) from None
    return made, secure


def _write_sub_options(data: Path) -> None:
    """The reader's login as a mosquitto_sub options file, which mosquitto_sub reads from
    $XDG_CONFIG_HOME/mosquitto_sub: `XDG_CONFIG_HOME=DATA/credentials mosquitto_sub -t …`
    logs in without the password on a command line (docker compose's health check)."""
    reader = auth.load_role(data, "reader")
    path = auth.credentials_dir(data) / SUB_OPTIONS
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"-u {reader.user}\n-P {reader.password}\n")
    os.chmod(path, 0o600)


def _unwritable(data: Path, exc: OSError) -> UserError:
    return UserError(
        f"cannot write the broker config in {data}: {exc.strerror} — "
        "choose another --data directory"
    )


def write_config(args: argparse.Namespace) -> tuple[Path, list[auth.Credentials]]:
    made, secure = prepare(args)
    path: Path = args.data / "mosquitto.conf"
    try:
        path.write_text(render_config(args.port, args.bind, args.data, args.insecure, secure))
    except OSError as exc:
        raise _unwritable(args.data, exc) from None
    return path, made
