"""`iotpipe login`: broker logins for other software — Home Assistant, Node-RED, Telegraf.

`iotpipe login add NAME --role ROLE` makes a user with a random password and the ACL of
its role (``iotpipe/broker/auth.py`` LOGIN_ROLES), kept in DATA/credentials/logins/NAME.json (mode
0600), so it is part of the password file and the ACL that the broker writes at every
start: it survives restarts, unlike a line added to ``passwd`` by hand. `list` shows them
(no passwords), `remove NAME` takes one away. A running broker reloads at once
(``iotpipe/broker/reload.py``), as after `iotpipe board login`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from iotpipe.broker import auth, reload
from iotpipe.errors import UserError
from iotpipe.settings import add_settings

ACTIONS = ("add", "list", "remove")


def configure(parser: argparse.ArgumentParser) -> None:
    # Actions and names, not settings: IOTPIPE_ROLE in an environment would be a trap.
    parser.add_argument("action", choices=ACTIONS, help="add, list or remove a login")
    parser.add_argument("name", nargs="?", help="the MQTT user name (add, remove)")
    roles = "; ".join(f"{role}: {about}" for role, about in auth.LOGIN_ROLES.items())
    parser.add_argument("--role", choices=tuple(auth.LOGIN_ROLES), help=f"for add — {roles}")
    add_settings(parser, "data", "log-level")


def run(args: argparse.Namespace) -> int:
    folder = auth.broker_data(Path(args.data))
    if args.action == "list":
        return _list(folder)
    if not args.name:
        raise UserError(f"`iotpipe login {args.action}` needs the login's NAME")
    try:
        if args.action == "add":
            _add(folder, args.name, args.role)
        else:
            creds = auth.remove_login(folder, args.name)
            print(f"removed the MQTT login {creds.user} (role {creds.role})")
            print(reload.reload(folder, "the removal").message)
    except OSError as exc:
        raise UserError(
            f"cannot write the logins in {folder}: {exc.strerror} — run this as the user the "
            "broker runs as"
        ) from None
    return 0


def _add(folder: Path, name: str, role: str | None) -> None:
    if role is None:
        raise UserError(f"`iotpipe login add` needs --role, one of {', '.join(auth.LOGIN_ROLES)}")
    creds, made = auth.add_login(folder, name, role)
    path = auth.login_file(folder, name).resolve()
    if made:
        print(
            f"made the MQTT login {creds.user} (role {role}): password {creds.password}\n"
            f"  (shown this once; saved in {path}, mode 0600)"
        )
    else:
        print(f"the MQTT login {creds.user} (role {role}) exists; its password is in {path}")
    print(reload.reload(folder, "the new login").message)


def _list(folder: Path) -> int:
    found = auth.logins(folder)
    if not found:
        print(f"no extra logins in {folder} (add one with `iotpipe login add NAME --role …`)")
    for creds in found:
        print(f"{creds.user:<24} {creds.role:<14} {auth.login_file(folder, creds.user)}")
    return 0
