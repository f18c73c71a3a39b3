"""The `iotpipe` command: argument parsing and one place that turns errors into messages.

Each sub-command lives in its own thin module in ``iotpipe/commands/`` with
``configure(parser)`` and ``run(args)``; the table below is the whole list. Those modules
import their heavy parts inside ``run``, so `iotpipe bridge` on a Raspberry Pi never loads
Flask or plotly.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Protocol, cast

from iotpipe import __version__, configfile
from iotpipe.errors import UserError
from iotpipe.settings import SETTINGS, taken


class CommandModule(Protocol):
    def configure(self, parser: argparse.ArgumentParser) -> None: ...
    def run(self, args: argparse.Namespace) -> int: ...


# (words, module, one-line help)
COMMANDS: list[tuple[tuple[str, ...], str, str]] = [
    (("up",), "iotpipe.commands.up", "run broker, boards, bridges and dashboard together"),
    (("broker",), "iotpipe.commands.broker", "run Mosquitto with the project's configuration"),
    (("bridge",), "iotpipe.commands.bridge", "forward a board's serial lines to MQTT"),
    (("dashboard",), "iotpipe.commands.dashboard", "serve live charts and the HTTP API"),
    (
        ("board", "virtual"),
        "iotpipe.commands.board_virtual",
        "run the firmware under the MicroPython unix port behind a pseudo-terminal",
    ),
    (
        ("board", "deploy"),
        "iotpipe.commands.board_deploy",
        "copy the firmware and its config to a board with mpremote and restart it",
    ),
    (("board", "ports"), "iotpipe.commands.board_ports", "list serial ports that look like boards"),
    (
        ("board", "login"),
        "iotpipe.commands.board_login",
        "make a Wi-Fi board's own broker login (its topics only) and reload the broker",
    ),
    (
        ("board", "revoke"),
        "iotpipe.commands.board_revoke",
        "remove a Wi-Fi board's broker login and reload the broker, which drops the board",
    ),
    (
        ("announce",),
        "iotpipe.commands.announce",
        "announce the boards on Wi-Fi to Home Assistant from their retained meta",
    ),
    (("login",), "iotpipe.commands.login", "add, list or remove a broker login for other software"),
    (
        ("doctor",),
        "iotpipe.commands.doctor",
        "check this machine (Mosquitto, ports, serial permissions, boards, broker login)",
    ),
    (("sub",), "iotpipe.commands.sub", "print live MQTT messages decoded and aligned"),
    (("export",), "iotpipe.commands.export", "write a device's history from the dashboard's store"),
    (
        ("alerts", "test"),
        "iotpipe.commands.alerts",
        "send a test notification to a rule's destinations",
    ),
]

GROUPS = {
    "board": "MicroPython boards: a virtual one, deploying the firmware, finding ports, "
    "a Wi-Fi board's broker login"
}

PRECEDENCE = (
    "Every flag can also be set by its IOTPIPE_… environment variable or in the TOML "
    "configuration file (--config FILE, else $IOTPIPE_CONFIG, else "
    "~/.config/iotpipe/config.toml if it exists; flat keys named like the flags, or a "
    "table per command such as [bridge]). A flag wins over the environment, the "
    "environment over the file, the file over the default. See docs/configuration.md."
)


def _load(module: str) -> CommandModule:
    return cast(CommandModule, importlib.import_module(module))


def _chosen(argv: Sequence[str]) -> tuple[str, ...] | None:
    """The command words named in argv, so only that command's module is imported."""
    words = [a for a in argv if not a.startswith("-")]
    named = configfile.named_in(argv)
    if named is not None and configfile.FLAG in argv:
        words.remove(named)  # the value of `--config FILE` is not a command word
    for command, _module, _help in COMMANDS:
        if tuple(words[: len(command)]) == command:
            return command
    return None


def _add_config_flag(parser: argparse.ArgumentParser) -> None:
    # Read before the flags are built (see configfile.activate); declared here so that
    # argparse accepts it and --help shows it, before or after the command.
    parser.add_argument(
        configfile.FLAG,
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"TOML configuration file (env {configfile.ENV}; "
        "default: ~/.config/iotpipe/config.toml if it exists)",
    )


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    config = configfile.activate(argv)
    config.check(SETTINGS, (" ".join(words) for words, _m, _h in COMMANDS))
    parser = argparse.ArgumentParser(
        prog="iotpipe",
        description="MicroPython sensor boards → serial → MQTT → live charts in a browser.",
        epilog=PRECEDENCE,
    )
    parser.add_argument("--version", action="version", version=f"iotpipe {__version__}")
    _add_config_flag(parser)
    top = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    # Each group's add_parser, so no annotation names argparse's private action class.
    groups: dict[str, Callable[..., argparse.ArgumentParser]] = {}
    chosen = _chosen(argv)
    for words, module, help_text in COMMANDS:
        add_parser = top.add_parser
        for group in words[:-1]:
            if group not in groups:
                about = GROUPS.get(group, f"{group} commands")
                group_parser = top.add_parser(group, help=about, description=about)
                groups[group] = group_parser.add_subparsers(
                    title=f"{group} commands", metavar="COMMAND", required=True
                ).add_parser
            add_parser = groups[group]
        sub = add_parser(words[-1], help=help_text, description=help_text, epilog=PRECEDENCE)
        sub.set_defaults(command_module=module)
        if words == chosen:
            _add_config_flag(sub)
            _load(module).configure(sub)
            config.check_command(" ".join(words), taken(sub))
    return parser


def _configure_logging(level_name: str) -> None:
    level = logging.getLevelName(level_name.upper())
    if not isinstance(level, int):
        raise UserError(f"log level {level_name!r} is not one of debug, info, warning, error")
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser(argv).parse_args(argv)
        _configure_logging(getattr(args, "log_level", "info"))
        return _load(args.command_module).run(args)
    except UserError as exc:
        print(f"iotpipe: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
