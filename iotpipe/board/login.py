"""`iotpipe board login`: the broker login of one Wi-Fi board.

A board on Wi-Fi talks to the broker itself, with a user of its own that may publish and
read its own device's topics only (``iotpipe/broker/auth.py``). This makes that login in the
broker's data directory (or finds the one made before), rewrites the password file and
the ACL, and makes a running broker reload them (``iotpipe/broker/reload.py``).
`iotpipe board deploy --broker-data DIR` does the same on its way.
"""

from __future__ import annotations

from pathlib import Path

from iotpipe import wire
from iotpipe.board.wifi import is_loopback
from iotpipe.broker import auth, reload
from iotpipe.errors import UserError


def make_login(data: Path, device: str, show: bool = True) -> tuple[auth.Credentials, Path]:
    """The board's login, made or found, with the broker told; prints what happened (the
    new password too when ``show``: deploy puts it on the board without showing it)."""
    if not wire.DEVICE_ID_RE.fullmatch(device):
        raise UserError(f"device id {device!r} must match {wire.DEVICE_ID_RE.pattern}")
    folder = auth.broker_data(data)
    try:
        creds, made = auth.add_board(folder, device)
    except OSError as exc:
        raise UserError(
            f"cannot write the board's login in {folder}: {exc.strerror} — run this as the "
            "user the broker runs as"
        ) from None
    path = auth.board_file(folder, device).resolve()
    if made and show:
        print(f"made the MQTT login of board {device}: user {creds.user}  password "
              f"{creds.password}\n  (shown this once; saved in {path}, mode 0600)")  # fmt: skip
    elif made:
        print(f"made the MQTT login of board {device}: user {creds.user} (in {path}, mode 0600)")
    else:
        print(f"board {device} already has an MQTT login: user {creds.user}, password in {path}")
    print(reload.reload(folder, "the new login").message)
    return creds, path


def for_deploy(
    device: str, base: str, broker_dir: Path | None, login_file: Path | None
) -> auth.Credentials:
    """The login `iotpipe board deploy` puts on a board: made in the broker's data
    directory, or read from a file that `iotpipe board login` wrote."""
    if broker_dir is not None and login_file is None:
        return _made_in(broker_dir, device, base)
    if login_file is not None and broker_dir is None:
        return _read_from(login_file, device)
    raise UserError(
        "a Wi-Fi board needs its broker login: give --broker-data DIR (the broker's --data "
        "on this machine; the login is made there) or --board-login FILE (made by "
        "`iotpipe board login`), not both"
    )


def _read_from(path: Path, device: str) -> auth.Credentials:
    creds = auth.load_board(path)
    if creds.device != device:
        raise UserError(
            f"{path} is the login of board {creds.device!r}, not {device!r} — make this "
            f"board's with `iotpipe board login --device-id {device}`"
        )
    return creds


def _made_in(data: Path, device: str, base: str) -> auth.Credentials:
    folder = auth.broker_data(data)
    recorded, _prefix = auth.recorded_topics(folder)
    if recorded != base:
        raise UserError(
            f"the broker in {folder} grants topics under {recorded!r}, not {base!r} — "
            f"give --base-topic {recorded}"
        )
    if listens_on_loopback_only(folder):
        print(
            f"note: the broker in {folder} listens on this machine only (--bind); a board "
            "reaches it once it listens on the LAN, e.g. `iotpipe broker --bind 0.0.0.0`"
        )
    return make_login(folder, device, show=False)[0]


def listens_on_loopback_only(folder: Path) -> bool:
    """From the `listener PORT ADDRESS` lines of the config the broker last started with."""
    try:
        lines = (folder / reload.CONFIG_FILE).read_text().splitlines()
    except OSError:
        return False
    binds = [line.split()[2] for line in lines if line.startswith("listener ")
             and len(line.split()) > 2]  # fmt: skip
    return bool(binds) and all(is_loopback(b) for b in binds)
