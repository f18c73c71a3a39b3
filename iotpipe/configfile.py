"""The one configuration file: TOML, with flat keys and a table per command.

    broker = "mqtt://broker.lan:1883"     # flat: every command that has --broker
    [bridge]
    serial = "/dev/serial/by-id/usb-Silicon_Labs_CP2102-if00-port0"
    [board.virtual]
    rate = 5

Keys are the settings' names (``spool-max-mb`` or ``spool_max_mb``). Which file: the
``--config FILE`` flag, else ``$IOTPIPE_CONFIG``, else ``~/.config/iotpipe/config.toml``
(``$XDG_CONFIG_HOME``) if it exists. Precedence: flag > environment > this file > default.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iotpipe.errors import UserError

ENV = "IOTPIPE_CONFIG"
FLAG = "--config"


def default_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "iotpipe" / "config.toml"


@dataclass(frozen=True)
class ConfigFile:
    path: Path | None = None
    flat: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)

    def value(self, command: str, name: str) -> str | None:
        """The setting ``name`` for ``command`` ("bridge", "board virtual") as text, or None."""
        table = self.tables.get(command, {})
        raw = table.get(name, self.flat.get(name))
        if raw is None:
            return None
        if isinstance(raw, bool):
            return "on" if raw else "off"
        if isinstance(raw, str | int | float):
            return os.path.expanduser(raw) if isinstance(raw, str) else str(raw)
        raise UserError(f"{self.path}: {name} must be a string or a number, not {raw!r}")

    def check(self, settings: Iterable[str], commands: Iterable[str]) -> None:
        """Refuse keys no command reads and tables of no command: a typo is never ignored."""
        known, names = set(settings), set(commands)
        for name in self.flat:
            if name not in known:
                raise UserError(
                    f"{self.path}: unknown setting {name!r} — see docs/configuration.md"
                )
        for command in self.tables:
            if command not in names:
                raise UserError(
                    f"{self.path}: [{command.replace(' ', '.')}] is not an iotpipe command — "
                    f"tables are named after commands: {', '.join(sorted(names))}"
                )

    def check_command(self, command: str, flags: Iterable[str]) -> None:
        """Every key of the command's table must be one of the settings it takes."""
        takes = set(flags)
        for name in self.tables.get(command, {}):
            if name not in takes:
                raise UserError(
                    f"{self.path}: {name!r} is not a setting of `iotpipe {command}` — "
                    f"see `iotpipe {command} --help`"
                )


def _key(name: str) -> str:
    return name.replace("_", "-")


def _split(doc: dict[str, Any], prefix: str, out: ConfigFile) -> None:
    """Top-level scalars are flat keys; ``[a.b]`` holds the settings of `iotpipe a b`."""
    for key, value in doc.items():
        if not isinstance(value, dict):
            out.flat[_key(key)] = value
            continue
        command = f"{prefix} {key}".strip()
        nested = {k: v for k, v in value.items() if isinstance(v, dict)}
        scalars = {_key(k): v for k, v in value.items() if k not in nested}
        if scalars or not nested:
            out.tables[command] = scalars
        for name, table in nested.items():
            _split({name: table}, command, out)


def load(path: Path) -> ConfigFile:
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise UserError(
            f"cannot read the config file {path}: {exc.strerror} — "
            f"fix {FLAG} or ${ENV}, or create the file"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid TOML: {exc}") from None
    config = ConfigFile(path)
    _split(doc, "", config)
    return config


def named_in(argv: Sequence[str]) -> str | None:
    """The value of ``--config`` wherever it stands in argv (before or after the command)."""
    for i, arg in enumerate(argv):
        if arg == FLAG and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(FLAG + "="):
            return arg.split("=", 1)[1]
    return None


def locate(argv: Sequence[str] = ()) -> ConfigFile:
    named = named_in(argv) or os.environ.get(ENV)
    if named:
        return load(Path(named).expanduser())
    fallback = default_path()
    return load(fallback) if fallback.is_file() else ConfigFile()


_active: ConfigFile | None = None


def activate(argv: Sequence[str]) -> ConfigFile:
    """Choose the file for this run of the CLI (called once, before the flags are built)."""
    global _active
    _active = locate(argv)
    if named_in(argv) and _active.path is not None:
        # Children (`iotpipe up` starts the parts as processes) read the same file.
        os.environ[ENV] = str(_active.path)
    return _active


def active() -> ConfigFile:
    global _active
    if _active is None:
        _active = locate()
    return _active


def forget() -> None:
    """No file chosen: the next ``active()`` looks again (a test changing the environment)."""
    global _active
    _active = None
