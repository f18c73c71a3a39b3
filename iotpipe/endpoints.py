"""Where things listen: MQTT broker URLs and HTTP host:port pairs, parsed once at the edge."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

SCHEMES = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, slots=True)
class BrokerURL:
    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"

    def __str__(self) -> str:  # never prints the password
        user = f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{_bracketed(self.host)}:{self.port}"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _port(text: str, what: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{what} port {text!r} must be a number from 1 to 65535")
    return int(text)


def parse_broker_url(text: str) -> BrokerURL:
    """``mqtt://[user[:password]@]host[:port]`` or ``mqtts://…`` (default ports 1883/8883)."""
    parts = urlsplit(text)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"broker URL {text!r} must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"broker URL {text!r} names no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"broker URL {text!r} must not have a path, query or fragment")
    # The port follows the host: past any user:password@ and any [IPv6] brackets.
    netloc_port = parts.netloc.rsplit("@", 1)[-1].rsplit("]", 1)[-1]
    port = SCHEMES[parts.scheme]
    if ":" in netloc_port:
        port = _port(netloc_port.rsplit(":", 1)[1], "broker")
    return BrokerURL(
        parts.scheme,
        parts.hostname,
        port,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{_bracketed(self.host)}:{self.port}"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = "::1" if host == "::" else host
        return f"http://{_bracketed(host)}:{self.port}/"


def parse_host_port(text: str) -> HostPort:
    """``HOST:PORT``, ``[v6]:PORT`` or ``:PORT`` (all interfaces is never the default)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r} must be HOST:PORT, for example 127.0.0.1:8080")
    host = host.strip("[]") or "0.0.0.0"
    if not host.replace("-", "").replace(".", "").isalnum():
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not a host name or IP address") from None
    return HostPort(host, _port(port, "HTTP"))
