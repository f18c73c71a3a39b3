"""The Wi-Fi and MQTT keys of a board's config.json for the ``mqtt`` transport.

Checked here, on the deploying machine, because a board given a wrong value can only
report it by never showing up on the broker. The keys are the firmware's contract
(``firmware/boardconfig.py``).
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotpipe.broker.auth import Credentials
from iotpipe.endpoints import BrokerURL
from iotpipe.errors import UserError

MAX_SSID_BYTES = 32  # IEEE 802.11
CA_FILE = "ca.der"  # on the board's flash: what its TLS client trusts (firmware/netconfig.py)
WPA_PASSPHRASE_CHARS = (8, 63)  # printable ASCII, IEEE 802.11i


@dataclass(frozen=True, slots=True)
class Wifi:
    ssid: str
    password: str


def check_ssid(ssid: str | None) -> str:
    if not ssid:
        raise UserError(
            "a Wi-Fi board needs the network it joins — give --wifi-ssid (or IOTPIPE_WIFI_SSID)"
        )
    if len(ssid.encode()) > MAX_SSID_BYTES:
        raise UserError(
            f"Wi-Fi name {ssid!r} is {len(ssid.encode())} bytes; an SSID has at most "
            f"{MAX_SSID_BYTES} — check --wifi-ssid"
        )
    return ssid


def check_password(password: str | None) -> str:
    """8 to 63 printable ASCII characters (WPA2/WPA3 passphrase), or empty: open network."""
    if password is None:
        raise UserError(
            "give the Wi-Fi password in IOTPIPE_WIFI_PASSWORD (or --wifi-password, which "
            "`ps` shows); an empty one means an open network"
        )
    low, high = WPA_PASSPHRASE_CHARS
    if password and not low <= len(password) <= high:
        raise UserError(
            f"the Wi-Fi password has {len(password)} characters; a WPA passphrase has "
            f"{low} to {high} (empty for an open network) — check IOTPIPE_WIFI_PASSWORD"
        )
    if not all(" " <= c <= "~" for c in password):
        raise UserError(
            "the Wi-Fi password holds characters other than printable ASCII, which a WPA "
            "passphrase cannot — check IOTPIPE_WIFI_PASSWORD"
        )
    return password


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def check_broker(broker: BrokerURL, allow_loopback: bool) -> BrokerURL:
    """An address the board can reach itself, with no login in it."""
    if broker.username:
        raise UserError(
            "the board logs in with its own user: leave user:password out of --broker and "
            "give --broker-data or --board-login"
        )
    if is_loopback(broker.host) and not allow_loopback:
        raise UserError(
            f"the board cannot reach {broker.host}: that is this machine only to itself — "
            "give the broker's LAN address, e.g. --broker mqtt://192.168.1.20:1883 "
            "(--allow-loopback for a virtual board on this machine)"
        )
    return broker


def mqtt_keys(wifi: Wifi, broker: BrokerURL, login: Credentials, base: str) -> dict[str, Any]:
    return {
        "transport": "mqtt",
        "wifi_ssid": wifi.ssid,
        "wifi_password": wifi.password,
        "mqtt_host": broker.host,
        "mqtt_port": broker.port,
        "mqtt_user": login.user,
        "mqtt_password": login.password,
        "base_topic": base,
        "mqtt_ca": CA_FILE if broker.tls else None,
    }


def ca_der(pem: Path) -> bytes:
    """The CA certificate a board's TLS client trusts, as the DER bytes it loads."""
    try:
        return ssl.PEM_cert_to_DER_cert(pem.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(
            f"cannot read the CA certificate {pem} ({exc}) — give the broker's "
            "DATA/tls/ca.crt, which `iotpipe broker --tls-port` makes"
        ) from None
