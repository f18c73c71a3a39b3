"""`iotpipe doctor`: check this machine and say how to fix each problem.

Each check is a function of the parsed settings that returns one :class:`Check`; they run
in order and each is printed as soon as it is known. Exit status 1 when any check failed
(a warning, such as no board plugged in, does not fail).
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import pwd
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from iotpipe import configfile
from iotpipe.endpoints import HostPort
from iotpipe.errors import UserError
from iotpipe.mqttlogin import SETTINGS as LOGIN_SETTINGS
from iotpipe.mqttlogin import Login, LoginFailed, connect
from iotpipe.settings import add_settings

if TYPE_CHECKING:
    from iotpipe.serialports import BoardPort

OK, WARN, FAIL = "✓", "!", "✗"


@dataclass(frozen=True, slots=True)
class Check:
    level: str
    what: str
    detail: str
    fix: str = ""


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings(
        parser, *LOGIN_SETTINGS, "port", "http", "serial", "mosquitto", "data", "spool", "log-level"
    )


def check_mosquitto(args: argparse.Namespace) -> Check:
    from iotpipe.broker.mosquitto import find_mosquitto

    try:
        binary = find_mosquitto(args.mosquitto)
    except UserError as exc:
        problem, _, fix = str(exc).partition(" — ")
        return Check(FAIL, "mosquitto", problem, fix)
    try:
        # `mosquitto -h` prints its version first and exits 3.
        out = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=5).stdout
        version = out.splitlines()[0] if out else "version unknown"
    except (OSError, subprocess.TimeoutExpired):
        version = "does not run"
    return Check(OK, "mosquitto", f"{binary} ({version})")


def check_broker(args: argparse.Namespace) -> Check:
    login = Login.from_args(args)
    try:
        client = connect(login, timeout=5.0)
    except LoginFailed as exc:
        return Check(FAIL, "broker", exc.problem, exc.fix)
    client.client.disconnect()
    user = login.username or login.broker.username
    who = f" as {user}" if user else ""
    return Check(OK, "broker", f"logged in to {login.broker}{who}")


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def check_mqtt_port(args: argparse.Namespace, broker_ok: bool) -> Check:
    port: int = args.port
    if _port_free("127.0.0.1", port):
        return Check(OK, "mqtt port", f"{port} is free for `iotpipe broker`")
    if broker_ok and args.broker.port == port:
        return Check(OK, "mqtt port", f"{port} is in use by the broker that answered above")
    return Check(
        FAIL,
        "mqtt port",
        f"{port} is in use by something that is not the broker of --broker",
        "stop it (a system Mosquitto: `sudo systemctl disable --now mosquitto`) "
        f"or give the broker another port: --port {port + 1} (and the same in --broker)",
    )


def _dashboard_answers(http: HostPort) -> bool:
    try:
        with urllib.request.urlopen(http.url + "healthz", timeout=2) as response:
            return bool(json.loads(response.read()).get("ok"))
    except urllib.error.HTTPError as exc:  # 503: a dashboard whose store cannot write
        try:
            return "store" in json.loads(exc.read())
        except (ValueError, AttributeError):
            return False
    except (OSError, ValueError, AttributeError):
        return False


def check_store(args: argparse.Namespace) -> Check:
    """The dashboard's SQLite history: sound, damaged, or damaged files kept aside."""
    from iotpipe.dashboard import damaged

    data: Path = args.data
    found = [d / "history.sqlite3" for d in (data, data / "dashboard")]
    path = next((p for p in found if p.is_file()), None)
    if path is None:
        return Check(OK, "history", f"no history in {data} yet")
    why = damaged.problem(path, read_only=True)
    if why is not None:
        return Check(
            FAIL,
            "history",
            f"{path} is damaged ({why})",
            "restart the dashboard: it keeps the file aside and starts a new store "
            '(docs/dashboard.md, "A damaged history file")',
        )
    aside = damaged.kept_aside(path.parent)
    if aside:
        return Check(
            WARN,
            "history",
            f"{path} is sound; a damaged one was kept aside: {aside[-1]}",
            damaged.recover_command(aside[-1]),
        )
    return Check(OK, "history", f"{path} passes SQLite's quick check")


def check_http_port(args: argparse.Namespace) -> Check:
    http: HostPort = args.http
    if _port_free(http.host, http.port):
        return Check(OK, "http port", f"{http} is free for the dashboard")
    if _dashboard_answers(http):
        return Check(OK, "http port", f"{http} is in use by a running iotpipe dashboard")
    return Check(
        FAIL,
        "http port",
        f"{http} is in use by something that is not an iotpipe dashboard",
        f"stop it, or give the dashboard another address: --http {http.host}:{http.port + 1}",
    )


def check_serial_permissions(args: argparse.Namespace) -> Check:
    if os.geteuid() == 0:
        return Check(OK, "serial access", "running as root: every serial port can be opened")
    user = pwd.getpwuid(os.geteuid()).pw_name
    try:
        dialout = grp.getgrnam("dialout")
    except KeyError:
        return Check(WARN, "serial access", "this system has no `dialout` group", "see its docs")
    if dialout.gr_gid in os.getgroups():
        return Check(OK, "serial access", f"{user} is in the dialout group")
    if user in dialout.gr_mem:
        return Check(
            FAIL,
            "serial access",
            f"{user} was added to dialout, but this login session predates it",
            "log out and back in (or run `newgrp dialout` in this shell)",
        )
    return Check(
        FAIL,
        "serial access",
        f"{user} is not in the dialout group, so it cannot open /dev/ttyUSB* or /dev/ttyACM*",
        f"sudo usermod -aG dialout {user}, then log out and back in",
    )


def _named_port(serial: str, ports: list[BoardPort]) -> Check:
    """--serial names a path or a USB serial number: it must be here, and openable."""
    wanted = Path(serial)
    by_number = any(p.serial_number == serial for p in ports)
    if not (wanted.exists() if serial.startswith("/") else by_number):
        names = ", ".join(p.device for p in ports) or "none"
        return Check(
            FAIL,
            "boards",
            f"--serial {serial} is not here (boards seen: {names})",
            "plug the board in with a data cable; `iotpipe board ports --all` lists ports",
        )
    if wanted.exists() and not os.access(wanted, os.R_OK | os.W_OK):
        return Check(FAIL, "boards", f"{serial} cannot be opened", "see serial access above")
    return Check(OK, "boards", f"{serial} is here")


def _all_here(named: list[Check]) -> Check:
    return named[0] if len(named) == 1 else Check(OK, "boards", "every port named is here")


def check_boards(args: argparse.Namespace) -> Check:
    from iotpipe.serialports import board_ports

    ports = board_ports()
    serials: list[str] = args.serial or []  # --serial may name several ports, or auto
    named = [_named_port(s, ports) for s in serials if "://" not in s and s != "auto"]
    missing = [check for check in named if check.level != OK]
    if missing or (named and len(named) == len(serials)):
        return missing[0] if missing else _all_here(named)
    if not ports:
        return Check(
            FAIL if "auto" in serials else WARN,
            "boards",
            "no serial port looks like a MicroPython board",
            "plug one in with a data (not charge-only) cable, or run without hardware: "
            "`iotpipe up` or `docker compose --profile virtual-board up`",
        )
    locked = [p.device for p in ports if not os.access(p.device, os.R_OK | os.W_OK)]
    if locked:
        return Check(FAIL, "boards", f"cannot open {', '.join(locked)}", "see serial access above")
    return Check(OK, "boards", f"found {', '.join(p.device for p in ports)}")


def check_spools(args: argparse.Namespace) -> Check:
    """Each bridge spool under DATA/spool (or --spool): readable, and none set aside."""
    from iotpipe.bridge.storage import damaged_files, spool_problem

    folders = [args.spool] if args.spool else sorted(Path(args.data, "spool").glob("*"))
    problems: list[str] = []
    for folder in folders:
        problems += [f"{kept} (set aside as damaged)" for kept in damaged_files(folder)]
        problem = spool_problem(folder)
        if problem:
            problems.append(problem)
    if problems:
        return Check(
            FAIL,
            "spool",
            "damaged: " + "; ".join(problems),
            "the bridge starts a new spool by itself; the readings still in a damaged file "
            "were not sent — keep the file to look into, or delete it",
        )
    return Check(OK, "spool", f"{len(folders)} bridge spool(s), none damaged")


def show(check: Check, say: Callable[[str], None]) -> None:
    say(f"  {check.level} {check.what:<14} {check.detail}")
    if check.fix:
        say(f"    {'':<14} fix: {check.fix}")


def run_checks(args: argparse.Namespace, say: Callable[[str], None]) -> list[Check]:
    """Every check, each shown as soon as it is known (the broker may take seconds)."""
    steps: list[Callable[[list[Check]], Check]] = [
        lambda done: check_mosquitto(args),
        lambda done: check_broker(args),
        lambda done: check_mqtt_port(args, broker_ok=done[-1].level == OK),
        lambda done: check_http_port(args),
        lambda done: check_serial_permissions(args),
        lambda done: check_boards(args),
        lambda done: check_store(args),
        lambda done: check_spools(args),
    ]
    checks: list[Check] = []
    for step in steps:
        checks.append(step(checks))
        show(checks[-1], say)
    return checks


def run(args: argparse.Namespace) -> int:
    def say(text: str) -> None:
        print(text, flush=True)

    config = configfile.active().path
    say(f"iotpipe doctor — config file: {config or 'none'}; broker: {args.broker}")
    checks = run_checks(args, say)
    failed = [c for c in checks if c.level == FAIL]
    if failed:
        say(f"\n{len(failed)} problem(s): {', '.join(c.what for c in failed)}. Fix and run again.")
        return 1
    say("\nall good.")
    return 0
