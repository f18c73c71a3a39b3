"""Who may log in to the broker and what each of them may do: the password file, the ACL
and the per-role credential files that `iotpipe broker` keeps in its data directory.

Credentials are made once, on the first start (random passwords, files mode 0600); the
ACL is rewritten at every start from the base topic, so it always matches the code's
topics (``iotpipe.topics``). docs/security.md explains the roles.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

ROLES = ("bridge", "dashboard", "reader")
HASH_ITERATIONS = 101  # what mosquitto_passwd 2.0 writes; the password is 32 random bytes
SALT_BYTES = 12


@dataclass(frozen=True, slots=True)
class Credentials:
    role: str
    user: str
    password: str

    def env(self) -> dict[str, str]:
        """For a child process: in the environment, so `ps` never shows the password."""
        return {"IOTPIPE_MQTT_USER": self.user, "IOTPIPE_MQTT_PASSWORD": self.password}


def user_name(role: str) -> str:
    return f"iotpipe-{role}"


def password_hash(password: str, salt: bytes | None = None) -> str:
    """Mosquitto 2.0's ``$7$`` format: PBKDF2-HMAC-SHA512, as mosquitto_passwd makes it."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, HASH_ITERATIONS)
    b64 = base64.b64encode
    return f"$7${HASH_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def acl(base: str, ha_prefix: str) -> str:
    """Least privilege per role; anything not granted here is refused by Mosquitto."""
    device = f"{base}/+"
    return "\n".join(
        [
            "# Written by `iotpipe broker` at every start; see docs/security.md.",
            f"user {user_name('bridge')}",
            *(f"topic write {device}/{kind}" for kind in ("telemetry", "status", "meta", "event")),
            f"topic write {device}/reply",
            f"topic write {base}/dashboard/+/reply",
            f"topic write {base}/bridge/+/status",
            f"topic read {device}/cmd",
            f"topic write {ha_prefix}/#",
            f"topic read {ha_prefix}/status",
            "",
            f"user {user_name('dashboard')}",
            *(f"topic read {device}/{kind}" for kind in ("telemetry", "status", "meta", "event")),
            f"topic write {device}/cmd",
            f"topic write {device}/alert",
            f"topic read {base}/dashboard/+/reply",
            "",
            f"user {user_name('reader')}",
            f"topic read {base}/#",
            f"topic read {ha_prefix}/#",
            "",
        ]
    )


def credentials_dir(data: Path) -> Path:
    return data / "credentials"


def load(path: Path) -> Credentials:
    body = json.loads(path.read_text())
    return Credentials(str(body["role"]), str(body["user"]), str(body["password"]))


def load_role(data: Path, role: str) -> Credentials:
    return load(credentials_dir(data) / f"{role}.json")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)


def ensure(data: Path, base: str, ha_prefix: str) -> list[Credentials]:
    """Make the credentials if there are none yet (returned, to be shown once), and write
    the password file and the ACL that Mosquitto reads."""
    folder = credentials_dir(data)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    made: list[Credentials] = []
    for role in ROLES:
        path = folder / f"{role}.json"
        if not path.exists():
            creds = Credentials(role, user_name(role), secrets.token_urlsafe(32))
            _write_private(path, json.dumps(_as_dict(creds)) + "\n")
            made.append(creds)
    everyone = [load_role(data, role) for role in ROLES]
    # Hashed afresh at every start (cheap), so the file always matches the credentials.
    lines = [f"{c.user}:{password_hash(c.password)}" for c in everyone]
    _write_private(data / "passwd", "\n".join(lines) + "\n")
    _write_private(data / "acl", acl(base, ha_prefix))
    return made


def _as_dict(creds: Credentials) -> dict[str, str]:
    return {"role": creds.role, "user": creds.user, "password": creds.password}
