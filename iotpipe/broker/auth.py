"""Who may log in to the broker and what each of them may do: the password file, the ACL
and the credential files that `iotpipe broker` keeps in its data directory.

Role credentials are made once, on the first start (random passwords, files mode 0600);
a Wi-Fi board gets a login of its own, made by `iotpipe board login` (``add_board``), and
so does any other client a person adds with `iotpipe login add` (Home Assistant, Node-RED,
Telegraf: ``add_login``, one of ``LOGIN_ROLES``). The password file and the ACL are
rewritten from the credential files and the base topic at every start and whenever a
login is added or removed, so they always match the code's topics (``iotpipe.topics``)
and a login kept in a file is never lost to a restart. docs/security.md explains the roles.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from iotpipe import wire
from iotpipe.errors import UserError

ROLES = ("bridge", "dashboard", "reader", "announcer")
BOARD_ROLE = "board"
# Logins a person adds for other software, by what that software must do.
LOGIN_ROLES = {
    "homeassistant": "Home Assistant: reads every board, discovery, sends commands",
    "reader": "read-only: every board's topics and discovery (Telegraf, Grafana)",
    "writer": "reads every board's topics and sends commands (Node-RED)",
}
LOGIN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
RESERVED_PREFIX = "iotpipe-"  # the roles' and boards' own user names
READINGS = ("telemetry", "status", "meta", "event")
HASH_ITERATIONS = 101  # what mosquitto_passwd 2.0 writes; the password is 32 random bytes
SALT_BYTES = 12
TOPICS_FILE = "topics.json"  # the base topic and prefix the ACL was last written for


@dataclass(frozen=True, slots=True)
class Credentials:
    role: str
    user: str
    password: str
    device: str | None = None  # only for a board: the one device id it may speak for

    def env(self) -> dict[str, str]:
        """For a child process: in the environment, so `ps` never shows the password."""
        return {"IOTPIPE_MQTT_USER": self.user, "IOTPIPE_MQTT_PASSWORD": self.password}


def user_name(role: str) -> str:
    return f"iotpipe-{role}"


def board_user(device: str) -> str:
    return f"iotpipe-board-{device}"


def password_hash(password: str, salt: bytes | None = None) -> str:
    """Mosquitto 2.0's ``$7$`` format: PBKDF2-HMAC-SHA512, as mosquitto_passwd makes it."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, HASH_ITERATIONS)
    b64 = base64.b64encode
    return f"$7${HASH_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def acl(
    base: str,
    ha_prefix: str,
    devices: tuple[str, ...] = (),
    logins: tuple[tuple[str, str], ...] = (),
) -> str:
    """Least privilege per role; anything not granted here is refused by Mosquitto."""
    device = f"{base}/+"
    return "\n".join(
        [
            "# Written by `iotpipe broker` at every start; see docs/security.md.",
            f"user {user_name('bridge')}",
            *(f"topic write {device}/{kind}" for kind in READINGS),
            f"topic write {device}/reply",
            f"topic write {base}/dashboard/+/reply",
            f"topic write {base}/bridge/+/status",
            f"topic read {device}/cmd",
            f"topic write {ha_prefix}/#",
            f"topic read {ha_prefix}/status",
            "",
            f"user {user_name('dashboard')}",
            *(f"topic read {device}/{kind}" for kind in READINGS),
            f"topic write {device}/cmd",
            f"topic write {device}/alert",
            f"topic read {base}/dashboard/+/reply",
            "",
            f"user {user_name('reader')}",
            f"topic read {base}/#",
            f"topic read {ha_prefix}/#",
            # The broker's own statistics: what health checks and monitoring read.
            "topic read $SYS/broker/#",
            "",
            # Announces Wi-Fi boards to Home Assistant from their meta (iotpipe announce).
            f"user {user_name('announcer')}",
            f"topic read {device}/meta",
            f"topic read {device}/status",
            f"topic readwrite {ha_prefix}/#",
            "",
            *(line for name in devices for line in board_acl(base, name)),
            *(line for user, role in logins for line in login_acl(base, ha_prefix, user, role)),
        ]
    )


def login_acl(base: str, ha_prefix: str, user: str, role: str) -> list[str]:
    """What a login added with `iotpipe login add` may do, by its role."""
    grants = {
        "homeassistant": [
            f"topic read {base}/#",
            f"topic readwrite {ha_prefix}/#",
            f"topic write {base}/+/cmd",
        ],
        "reader": [f"topic read {base}/#", f"topic read {ha_prefix}/#"],
        "writer": [f"topic read {base}/#", f"topic write {base}/+/cmd"],
    }[role]
    return [f"user {user}", *grants, ""]


def board_acl(base: str, device: str) -> list[str]:
    """A Wi-Fi board speaks for its own device id only: a stolen board (its login is in
    clear on its flash) cannot forge another device's readings or read its commands."""
    own = f"{base}/{device}"
    return [
        f"user {board_user(device)}",
        *(f"topic write {own}/{kind}" for kind in (*READINGS, "reply")),
        f"topic write {base}/dashboard/+/reply",  # answers to a dashboard's reply_to
        f"topic read {own}/cmd",
        "",
    ]


def credentials_dir(data: Path) -> Path:
    return data / "credentials"


def boards_dir(data: Path) -> Path:
    return credentials_dir(data) / "boards"


def board_file(data: Path, device: str) -> Path:
    return boards_dir(data) / f"{device}.json"


def logins_dir(data: Path) -> Path:
    return credentials_dir(data) / "logins"


def login_file(data: Path, name: str) -> Path:
    return logins_dir(data) / f"{name}.json"


def broker_data(data: Path) -> Path:
    """The broker's own folder: ``data`` itself, or ``data/broker`` as `iotpipe up` lays
    it out."""
    for folder in (data, data / "broker"):
        if (credentials_dir(folder) / "bridge.json").is_file():
            return folder
    raise UserError(
        f"no broker credentials in {data} — name the broker's --data directory (the one "
        "`iotpipe broker` or `iotpipe up` runs with), or start the broker there once"
    )


def load(path: Path) -> Credentials:
    body = json.loads(path.read_text())
    device = body.get("device")
    return Credentials(
        str(body["role"]), str(body["user"]), str(body["password"]), device and str(device)
    )


def load_role(data: Path, role: str) -> Credentials:
    return load(credentials_dir(data) / f"{role}.json")


def load_board(path: Path) -> Credentials:
    """A board's login file, checked: its user name is the one its ACL entry is made for."""
    try:
        creds = load(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(
            f"cannot read the board login {path} ({exc}) — make it with "
            "`iotpipe board login --device-id ID`"
        ) from None
    device = creds.device or ""
    if (
        creds.role != BOARD_ROLE
        or not wire.DEVICE_ID_RE.fullmatch(device)
        or creds.user != board_user(device)
    ):
        raise UserError(
            f"{path} is not a board login (role {creds.role!r}, user {creds.user!r}) — name "
            "a file that `iotpipe board login` made in DATA/credentials/boards/"
        )
    return creds


def boards(data: Path) -> list[Credentials]:
    folder = boards_dir(data)
    found = [load_board(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return list({c.device: c for c in found}.values())  # a copied file adds no second entry


def _write_private(path: Path, text: str) -> None:
    """Written beside and renamed over, so a broker reloading on SIGHUP never reads half a
    file; owned like its folder, so root adding a board leaves files that Mosquitto,
    running as the broker's own user, can still read (it reads them after switching)."""
    new = path.with_name(f".{path.name}.new")
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(new, 0o600)
    _owned_like_folder(new)
    os.replace(new, path)


def _owned_like_folder(path: Path) -> None:
    if os.geteuid() != 0:
        return
    folder = path.parent.stat()
    if folder.st_uid != 0:
        os.chown(path, folder.st_uid, folder.st_gid)


def _private_dir(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    _owned_like_folder(folder)


def ensure(data: Path, base: str, ha_prefix: str) -> list[Credentials]:
    """Make the role credentials if there are none yet (returned, to be shown once), and
    write the password file and the ACL that Mosquitto reads, boards included."""
    folder = credentials_dir(data)
    _private_dir(folder)
    made: list[Credentials] = []
    for role in ROLES:
        path = folder / f"{role}.json"
        if not path.exists():
            creds = Credentials(role, user_name(role), secrets.token_urlsafe(32))
            _write_private(path, json.dumps(_as_dict(creds)) + "\n")
            made.append(creds)
    topics = {"base_topic": base, "ha_prefix": ha_prefix}
    _write_private(data / TOPICS_FILE, json.dumps(topics) + "\n")
    write_login_files(data, base, ha_prefix)
    return made


def write_login_files(data: Path, base: str, ha_prefix: str) -> None:
    # A role added by a newer release (announcer) has no file in a data directory that an
    # older one made until the broker starts again (``ensure``): left out until then.
    folder = credentials_dir(data)
    everyone = [load_role(data, r) for r in ROLES if (folder / f"{r}.json").is_file()]
    devices = boards(data)
    others = logins(data)
    # Hashed afresh each time (cheap), so the file always matches the credentials.
    lines = [f"{c.user}:{password_hash(c.password)}" for c in (*everyone, *devices, *others)]
    _write_private(data / "passwd", "\n".join(lines) + "\n")
    names = tuple(c.device for c in devices if c.device)
    roles = tuple((c.user, c.role) for c in others)
    _write_private(data / "acl", acl(base, ha_prefix, names, roles))


def recorded_topics(data: Path) -> tuple[str, str]:
    """(base topic, HA prefix) the broker in ``data`` last started with."""
    try:
        body = json.loads((data / TOPICS_FILE).read_text())
        return str(body["base_topic"]), str(body["ha_prefix"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(
            f"{data} holds no locked-down broker set up by this iotpipe version — start "
            f"`iotpipe broker --data {data}` once (without --insecure), then try again"
        ) from None


def add_board(data: Path, device: str) -> tuple[Credentials, bool]:
    """The board's login, made now (True) or found (False), and the password file and ACL
    rewritten to include it. A running broker sees it after a reload (``broker.reload``)."""
    if not wire.DEVICE_ID_RE.fullmatch(device):
        raise UserError(f"device id {device!r} must match {wire.DEVICE_ID_RE.pattern}")
    base, ha_prefix = recorded_topics(data)
    path = board_file(data, device)
    made = not path.exists()
    if made:
        _private_dir(boards_dir(data))
        creds = Credentials(BOARD_ROLE, board_user(device), secrets.token_urlsafe(24), device)
        _write_private(path, json.dumps(_as_dict(creds)) + "\n")
    creds = load_board(path)
    write_login_files(data, base, ha_prefix)
    return creds, made


def remove_board(data: Path, device: str) -> Credentials:
    """Delete the board's login and rewrite the password file and ACL without it; a
    running broker drops it after a reload (``broker.reload``)."""
    path = board_file(data, device)
    if not wire.DEVICE_ID_RE.fullmatch(device) or not path.is_file():
        known = ", ".join(sorted(c.device or "" for c in boards(data))) or "none"
        raise UserError(f"board {device!r} has no login in {data} (boards with one: {known})")
    base, ha_prefix = recorded_topics(data)
    creds = load_board(path)
    path.unlink()
    write_login_files(data, base, ha_prefix)
    return creds


def _as_dict(creds: Credentials) -> dict[str, str]:
    body = {"role": creds.role, "user": creds.user, "password": creds.password}
    return body if creds.device is None else {**body, "device": creds.device}


def load_login(path: Path) -> Credentials:
    """A login file that `iotpipe login add` made, checked: a known role, a name that is
    neither a role's nor a board's."""
    try:
        creds = load(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(
            f"cannot read the login {path} ({exc}) — remove it and add it again "
            "with `iotpipe login add`"
        ) from None
    if creds.role not in LOGIN_ROLES or not _usable_name(creds.user) or path.stem != creds.user:
        raise UserError(
            f"{path} is not a login that `iotpipe login add` made (role {creds.role!r}, user "
            f"{creds.user!r}) — remove it from DATA/credentials/logins/"
        )
    return creds


def _usable_name(name: str) -> bool:
    return bool(LOGIN_NAME_RE.fullmatch(name)) and not name.startswith(RESERVED_PREFIX)


def logins(data: Path) -> list[Credentials]:
    folder = logins_dir(data)
    return [load_login(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def add_login(data: Path, name: str, role: str) -> tuple[Credentials, bool]:
    """A login for another client, made now (True) or found (False), and the password file
    and ACL rewritten to include it. A running broker sees it after a reload."""
    if not _usable_name(name):
        raise UserError(
            f"login name {name!r} must match {LOGIN_NAME_RE.pattern} and not begin with "
            f"{RESERVED_PREFIX!r} (those are iotpipe's own)"
        )
    if role not in LOGIN_ROLES:
        raise UserError(f"role {role!r} is not one of {', '.join(LOGIN_ROLES)}")
    base, ha_prefix = recorded_topics(data)
    path = login_file(data, name)
    made = not path.exists()
    if made:
        _private_dir(logins_dir(data))
        creds = Credentials(role, name, secrets.token_urlsafe(24))
        _write_private(path, json.dumps(_as_dict(creds)) + "\n")
    creds = load_login(path)
    if creds.role != role:
        raise UserError(
            f"login {name!r} exists with role {creds.role!r} — `iotpipe login remove {name}` "
            "first to give it another role (and a new password)"
        )
    write_login_files(data, base, ha_prefix)
    return creds, made


def remove_login(data: Path, name: str) -> Credentials:
    path = login_file(data, name)
    if not _usable_name(name) or not path.is_file():
        known = ", ".join(c.user for c in logins(data)) or "none"
        raise UserError(f"no login {name!r} in {data} (logins there: {known})")
    base, ha_prefix = recorded_topics(data)
    creds = load_login(path)
    path.unlink()
    write_login_files(data, base, ha_prefix)
    return creds
