"""Every setting declared once: its flag, environment variable, default and help.

The CLI builds its flags from this table, and ``docs/configuration.md`` is checked against
it by a test, so the three can never disagree. Precedence: flag, then ``IOTPIPE_…``
environment variable, then the default here.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotpipe.endpoints import parse_broker_url, parse_host_port
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

    @property
    def flag(self) -> str:
        return "--" + self.name

    @property
    def env(self) -> str:
        return "IOTPIPE_" + self.name.upper().replace("-", "_")


_TABLE = [
    Setting("broker", "mqtt://127.0.0.1:1883", "MQTT broker URL", parse_broker_url, "URL"),
    Setting("base-topic", "iotpipe", "first level of every topic", check_base, "TOPIC"),
    Setting("serial", None, "the board's serial port (path or pyserial URL)", str, "PORT"),
    Setting("baud", 115200, "serial baud rate", _count(50, 4_000_000), "BAUD"),
    Setting("http", "127.0.0.1:8080", "where the dashboard listens", parse_host_port, "HOST:PORT"),
    Setting("data", _default_data_dir(), "data directory (history, broker state)", Path, "DIR"),
    Setting("port", 1883, "MQTT port the broker listens on", _port, "P"),
    Setting("bind", "127.0.0.1", "address the broker listens on", str, "ADDR"),
    Setting("mosquitto", "mosquitto", "the Mosquitto binary (name on PATH or a path)", str, "PATH"),
    Setting("mqtt-port", 1883, "MQTT port for the broker that `up` starts", _port, "P"),
    Setting("link", None, "path where the virtual board's serial device appears", Path, "PATH"),
    Setting("rate", 1.0, "readings per second", _positive_float, "HZ"),
    Setting("device-id", None, "device id (default: from the board)", str, "ID"),
    Setting(
        "virtual", None, "number of virtual boards (default 1 without --serial)", _count(0, 64), "N"
    ),
    Setting(
        "history",
        100_000,
        "readings kept in the dashboard's store per device and metric",
        _count(100, 100_000_000),
        "N",
    ),
    Setting("log-level", "info", "debug, info, warning or error", str.lower, "LEVEL"),
]
SETTINGS: dict[str, Setting] = {s.name: s for s in _TABLE}


def add_settings(
    parser: argparse.ArgumentParser, *names: str, required: tuple[str, ...] = ()
) -> None:
    """Add the named settings as flags whose default comes from the environment."""
    for name in names:
        setting = SETTINGS[name]
        from_env = os.environ.get(setting.env)
        default = from_env if from_env is not None else setting.default
        # argparse runs `type` on string defaults too, so a bad environment value is
        # reported exactly like a bad flag.
        parser.add_argument(
            setting.flag,
            dest=name.replace("-", "_"),
            type=_named(setting),
            default=default,
            required=name in required and default is None,
            metavar=setting.metavar,
            help=f"{setting.help} (env {setting.env}; default: {setting.default})",
        )


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
