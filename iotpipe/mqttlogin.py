"""Logging in to the broker for the CLI's own clients (`iotpipe doctor`, `iotpipe sub`,
`iotpipe announce`, deploy's watch).

One place that turns a failed MQTT connection (``iotpipe.transport``'s typed failures)
into what went wrong and what to do, so every command says the same thing about the same
problem.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from paho.mqtt.reasoncodes import ReasonCode

from iotpipe import transport
from iotpipe.counters import Counters
from iotpipe.endpoints import BrokerURL
from iotpipe.errors import UserError

SETTINGS = (
    "broker",
    "mqtt-user",
    "mqtt-password",
    "mqtt-credentials",
    "mqtt-ca",
    "mqtt-cert",
    "mqtt-key",
)
BAD_LOGIN = {134, 135}  # MQTT 5: bad user name or password; not authorised


def fill_credentials(args: argparse.Namespace, role: str | None = None) -> None:
    """--mqtt-credentials FILE (JSON with user and password) fills --mqtt-user and
    --mqtt-password where those are not given, so no secret has to be copied by hand.
    Without it, a bridge or dashboard sharing its --data with the broker (directly, or as
    `iotpipe up` lays it out) finds its role's file there."""
    if getattr(args, "mqtt_user", None) or args.broker.username:
        return
    path: Path | None = getattr(args, "mqtt_credentials", None)
    if path is None and role is not None and getattr(args, "data", None) is not None:
        data = Path(args.data)
        for folder in (data, data / "broker", data.parent / "broker"):
            if (folder / "credentials" / f"{role}.json").is_file():
                path = folder / "credentials" / f"{role}.json"
                break
    if path is None:
        return
    try:
        body = json.loads(path.read_text())
        args.mqtt_user, args.mqtt_password = str(body["user"]), str(body["password"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"cannot read MQTT credentials from {path} ({exc}) — name the file that "
            "`iotpipe broker` wrote in its data directory under credentials/"
        ) from None


class LoginFailed(Exception):
    """``problem`` says what went wrong, ``fix`` what to do about it."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem} — {fix}")
        self.problem = problem
        self.fix = fix


@dataclass(frozen=True, slots=True)
class Login(transport.Login):
    """The transport's login, read from the command line's settings."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Login:
        fill_credentials(args)
        names = ("broker", "mqtt_user", "mqtt_password", "mqtt_ca", "mqtt_cert", "mqtt_key")
        return cls(*(getattr(args, name) for name in names))


def _unreachable(broker: BrokerURL, error: str) -> LoginFailed:
    return LoginFailed(
        f"cannot reach the broker at {broker} ({error})",
        "start it (`iotpipe broker`, `sudo systemctl start iotpipe-broker` or "
        "`docker compose up -d broker`), or fix the host and port in --broker / IOTPIPE_BROKER",
    )


def _refused(broker: BrokerURL, reason: ReasonCode) -> LoginFailed:
    if reason.value in BAD_LOGIN:
        return LoginFailed(
            f"the broker at {broker} refused the login ({reason})",
            "name the role's file that `iotpipe broker` made with --mqtt-credentials "
            "DATA/credentials/reader.json, or check IOTPIPE_MQTT_USER / IOTPIPE_MQTT_PASSWORD "
            "(or user:password in the URL) against the broker's password file "
            "(`mosquitto_passwd`)",
        )
    return LoginFailed(f"the broker at {broker} refused the connection ({reason})", "see its log")


def connect(
    login: transport.Login, timeout: float = 5.0, client_id: str = "", session_expiry_s: int = 0
) -> transport.Session:
    """A session logged in to the broker (its network loop not started), or LoginFailed.
    With ``session_expiry_s`` the broker keeps its session (subscriptions, QoS 1 messages
    that arrive meanwhile) across a dropped connection for that long: a fresh session at
    the first connect, resumed by reconnects; ``client_id`` must then be given."""
    options = transport.Options(login, session_expiry_s=session_expiry_s, fresh_first=True)
    session = transport.Session(options, client_id, Counters("iotpipe_cli"))
    try:
        transport.connect_now(session, timeout)
    except transport.TLSFailed as exc:
        raise LoginFailed(
            f"TLS with {login.broker} failed ({exc.reason})",
            "check --mqtt-ca (and --mqtt-cert/--mqtt-key if the broker asks for a client "
            "certificate) and the host name",
        ) from None
    except transport.Unreachable as exc:
        raise _unreachable(login.broker, exc.error) from None
    except transport.Dropped:
        if login.tls:
            raise LoginFailed(
                f"the broker at {login.broker} closed the TLS connection before answering",
                "it may want a client certificate: give --mqtt-cert and --mqtt-key (or check "
                "that the broker's CA signed them); its log says why",
            ) from None
        raise LoginFailed(
            f"the broker at {login.broker} closed the connection before answering", "see its log"
        ) from None
    except transport.NoAnswer:
        raise LoginFailed(
            f"{login.broker.host}:{login.broker.port} accepted a TCP connection but gave no "
            "MQTT answer",
            "something else listens on that port: fix the port in --broker / IOTPIPE_BROKER",
        ) from None
    except transport.Refused as exc:
        raise _refused(login.broker, exc.reason) from None
    return session
