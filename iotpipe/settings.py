"""Every setting declared once: its flag, environment variable, default and help.

The CLI builds its flags from this table, and ``docs/configuration.md`` is checked against
it by a test, so the three can never disagree. Precedence: flag, then ``IOTPIPE_…``
environment variable, then the configuration file (``iotpipe.configfile``), then the
default here.
"""

from __future__ import annotations

import argparse
import os
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotpipe import configfile
from iotpipe.durations import parse_duration
from iotpipe.endpoints import parse_broker_url, parse_host_port
from iotpipe.errors import UserError
from iotpipe.topics import check_base


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise ValueError(f"{text!r} must be a number above 0")
    return value


def _count(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"{text!r} must be a whole number from {low} to {high}")
        return value

    parse.__name__ = "number"
    return parse


def _port(text: str) -> int:
    return _count(1, 65535)(text)


def _on_off(text: str) -> bool:
    if text.lower() not in ("on", "off"):
        raise ValueError(f"{text!r} must be on or off")
    return text.lower() == "on"


def _http_url(text: str) -> str:
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", text):
        raise ValueError(f"{text!r} must be an http:// or https:// address such as http://pi:8080")
    return text


def check_share_group(text: str) -> str:
    """An MQTT 5 shared-subscription group name: one topic level, no wildcards."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        raise ValueError(f"share group {text!r} must be 1-64 letters, digits, '_', '.' or '-'")
    return text


def _default_data_dir() -> str:
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(xdg) / "iotpipe")


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    metavar: str | None = None
    repeat: bool = False  # the flag may be given again; the environment lists with commas

    @property
    def flag(self) -> str:
        return "--" + self.name

    @property
    def env(self) -> str:
        return "IOTPIPE_" + self.name.upper().replace("-", "_")


_TABLE = [
    Setting("broker", "mqtt://127.0.0.1:1883", "MQTT broker URL", parse_broker_url, "URL"),
    Setting("base-topic", "iotpipe", "first level of every topic", check_base, "TOPIC"),
    Setting(
        "serial",
        None,
        "a board's serial port: path, pyserial URL, `auto` (every board found, also later) "
        "or USB serial number; repeat the flag, or separate with commas, for several",
        str,
        "PORT",
        repeat=True,
    ),
    Setting("baud", 115200, "serial baud rate", _count(50, 4_000_000), "BAUD"),
    Setting("http", "127.0.0.1:8080", "where the dashboard listens", parse_host_port, "HOST:PORT"),
    Setting("data", _default_data_dir(), "data directory (history, broker state)", Path, "DIR"),
    Setting("port", 1883, "MQTT port the broker listens on", _port, "P"),
    Setting("bind", "127.0.0.1", "address the broker listens on", str, "ADDR"),
    Setting(
        "insecure",
        "off",
        "broker: INSECURE development mode — no passwords, no ACL, anyone may publish",
        _on_off,
        "on|off",
    ),
    Setting(
        "tls-port",
        None,
        "broker: port of an mqtts:// listener, e.g. 8883, with a CA it makes in DATA/tls",
        _port,
        "P",
    ),
    Setting(
        "tls-name",
        None,
        "broker: extra host names/IPs (comma-separated) in its TLS server certificate",
        str,
        "NAMES",
    ),
    Setting("mosquitto", "mosquitto", "the Mosquitto binary (name on PATH or a path)", str, "PATH"),
    Setting("mqtt-port", 1883, "MQTT port for the broker that `up` starts", _port, "P"),
    Setting("link", None, "path where the virtual board's serial device appears", Path, "PATH"),
    Setting("rate", 1.0, "readings per second", _positive_float, "HZ"),
    Setting("device-id", None, "device id (default: from the board)", str, "ID"),
    Setting(
        "virtual", None, "number of virtual boards (default 1 without --serial)", _count(0, 64), "N"
    ),
    Setting(
        "virtual-wifi",
        0,
        "number of virtual boards on Wi-Fi: the firmware publishing to the broker itself",
        _count(0, 64),
        "N",
    ),
    Setting(
        "history",
        100_000,
        "readings kept in the dashboard's store per device and metric",
        _count(100, 100_000_000),
        "N",
    ),
    Setting("log-level", "info", "debug, info, warning or error", str.lower, "LEVEL"),
    Setting(
        "store",
        None,
        "dashboard history store: a postgresql:// URL (default: SQLite in --data)",
        str,
        "URL",
    ),
    Setting(
        "retention",
        None,
        "dashboard: drop history older than this, e.g. 365d or 12h (default: keep)",
        parse_duration,
        "AGE",
    ),
    Setting(
        "share-group",
        None,
        "dashboard: MQTT 5 shared-subscription group that splits ingest between dashboards",
        check_share_group,
        "NAME",
    ),
    Setting(
        "alerts",
        None,
        "dashboard: TOML file of alert rules and destinations, reloaded when it changes",
        Path,
        "FILE",
    ),
    Setting(
        "public-url",
        None,
        "dashboard: its address as users reach it, for chart links in alerts "
        "(default: from --http)",
        _http_url,
        "URL",
    ),
    Setting(
        "alert-retry",
        3600.0,
        "dashboard: how long a failing alert destination is retried, e.g. 1h or 90s",
        parse_duration,
        "TIME",
    ),
    Setting(
        "http-threads",
        64,
        "dashboard: server threads (each open live stream holds one)",
        _count(8, 1000),
        "N",
    ),
    Setting(
        "command-timeout",
        5.0,
        "dashboard: seconds to wait for a board's answer to a command",
        _positive_float,
        "S",
    ),
    Setting(
        "spool",
        None,
        "bridge with one --serial: that port's on-disk spool of readings (default, and with "
        "several ports: each port's DATA/spool/PORT-NAME)",
        Path,
        "DIR",
    ),
    Setting(
        "spool-max-mb",
        100.0,
        "bridge: largest size of the spool; beyond it the oldest readings are dropped",
        _positive_float,
        "MB",
    ),
    Setting(
        "qos", 1, "bridge: QoS of readings (1 spools each until acknowledged)", _count(0, 1), "0|1"
    ),
    Setting(
        "drain-rate",
        500.0,
        "bridge: spooled readings sent per second after an outage",
        _positive_float,
        "N",
    ),
    Setting(
        "keep-acked",
        150.0,
        "bridge: seconds an acknowledged reading stays spooled and is sent again after a "
        "reconnect; over twice the broker's autosave_interval",
        _positive_float,
        "S",
    ),
    Setting(
        "request-timeout",
        4.0,
        "bridge: seconds a board has to answer a command before the asker gets an error",
        _positive_float,
        "S",
    ),
    Setting(
        "ha-discovery", "on", "bridge: publish Home Assistant discovery configs", _on_off, "on|off"
    ),
    Setting("ha-prefix", "homeassistant", "Home Assistant discovery prefix", check_base, "TOPIC"),
    Setting(
        "metrics",
        None,
        "bridge: serve Prometheus metrics at http://HOST:PORT/metrics",
        parse_host_port,
        "HOST:PORT",
    ),
    Setting("mqtt-user", None, "MQTT user name (instead of one in --broker)", str, "NAME"),
    Setting("mqtt-password", None, "MQTT password (better set in the environment)", str, "SECRET"),
    Setting("mqtt-ca", None, "CA certificate file to verify the broker's TLS", Path, "FILE"),
    Setting("mqtt-cert", None, "client certificate file for TLS", Path, "FILE"),
    Setting("mqtt-key", None, "private key file of the client certificate", Path, "FILE"),
    Setting(
        "mqtt-credentials",
        None,
        "JSON file with user and password, e.g. one `iotpipe broker` wrote in DATA/credentials",
        Path,
        "FILE",
    ),
    Setting("wifi-ssid", None, "board deploy: the Wi-Fi network a board joins", str, "SSID"),
    Setting(
        "wifi-password",
        None,
        "board deploy: its Wi-Fi password (better set in the environment; empty: open network)",
        str,
        "SECRET",
    ),
]
SETTINGS: dict[str, Setting] = {s.name: s for s in _TABLE}


# The settings each parser took through add_settings: only those read the config file, so
# only those may appear in its table for the command (`taken`).
_TAKEN: weakref.WeakKeyDictionary[argparse.ArgumentParser, set[str]] = weakref.WeakKeyDictionary()


def add_settings(
    parser: argparse.ArgumentParser, *names: str, required: tuple[str, ...] = ()
) -> None:
    """Add the named settings as flags whose default comes from the environment, else
    from the configuration file, else from the table above."""
    command = parser.prog.partition(" ")[2]
    _TAKEN.setdefault(parser, set()).update(names)
    for name in names:
        setting = SETTINGS[name]
        default, source = os.environ.get(setting.env), f"${setting.env}"
        if default is None:
            default, source = _from_config(setting, command), "the config file"
        if default is None:
            default, source = setting.default, ""
        # argparse runs `type` on string defaults too, so a bad environment value is
        # reported exactly like a bad flag.
        parser.add_argument(
            setting.flag,
            dest=name.replace("-", "_"),
            type=_named(setting),
            default=_listed(setting, default),
            required=name in required and default is None,
            metavar=setting.metavar,
            help=_help(setting, default if source else None, source, name in required),
            action=_Repeated if setting.repeat else "store",
        )


class _Repeated(argparse.Action):
    """Each use adds its comma-separated values; the first replaces the default (from the
    environment, the config file or the table), so a flag overrides those as it does for
    every setting."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        current = getattr(namespace, self.dest)
        given = values.split(",") if isinstance(values, str) else [values]
        kept = [] if current is self.default else current
        setattr(namespace, self.dest, [*kept, *(v.strip() for v in given if v.strip())])


def _listed(setting: Setting, default: str | None) -> Any:
    """A repeated setting's default from the environment or the file: its comma-separated
    values, each parsed."""
    if not setting.repeat or default is None:
        return default
    try:
        return [setting.parse(part.strip()) for part in default.split(",") if part.strip()]
    except ValueError as exc:
        raise UserError(f"{setting.name} = {default!r}: {exc}") from None


def taken(parser: argparse.ArgumentParser) -> frozenset[str]:
    """The settings ``add_settings`` gave this parser."""
    return frozenset(_TAKEN.get(parser, ()))


def _help(setting: Setting, value: str | None, source: str, required: bool) -> str:
    # A setting without a default says in its own help what happens when it is not set,
    # which a command that requires it must not claim.
    text = re.sub(r" \(default: [^)]*\)$", "", setting.help) if required else setting.help
    default = "; required" if required else ""
    if setting.default is not None:
        default += f"; default: {setting.default}"
    if value is not None:  # so `--help` shows where a surprising value came from
        shown = (
            "***"
            if "password" in setting.name
            else re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", value)
        )
        default += f"; now {shown} from {source}"
    return f"{text} (env {setting.env}{default})"


def _from_config(setting: Setting, command: str) -> str | None:
    config = configfile.active()
    text = config.value(command, setting.name)
    if text is not None:
        try:
            setting.parse(text)
        except ValueError as exc:
            raise UserError(f"{config.path}: {setting.name} = {text!r}: {exc}") from None
    return text


def _named(setting: Setting) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return setting.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = setting.name
    return parse


def markdown_table() -> str:
    """The table in docs/configuration.md; a test keeps the two identical."""
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for s in _TABLE:
        default = "—" if s.default is None else f"`{s.default}`"
        if s.name == "data":
            default = "`$XDG_DATA_HOME/iotpipe` (`~/.local/share/iotpipe`)"
        rows.append(f"| `{s.flag}` | `{s.env}` | {default} | {s.help} |")
    return "\n".join(rows) + "\n"
