"""What the virtual board does with the bytes on its serial port: a board's life cycle.

    running firmware --Ctrl-C--> friendly REPL --Ctrl-A--> raw REPL (mpremote)
          ^                            |                        |
          +---- Ctrl-D soft reboot ----+                        |
          +---- machine.reset() -------+------------------------+

While the firmware runs, host bytes go to its stdin (commands) and Ctrl-C interrupts it;
when it has stopped, :class:`~iotpipe.board.rawrepl.Repl` speaks the REPL protocol and
the agent process runs the code. A firmware that crashes is started again after a pause,
as the watchdog of a real board would; one that ends (a stop file) leaves the REPL.
"""

from __future__ import annotations

import logging
import os
import selectors
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from iotpipe.board import agent
from iotpipe.board.rawrepl import RAW_BANNER, SOFT_REBOOT, Mode, Repl

log = logging.getLogger(__name__)

RESTART_DELAY_S = 1.0
BANNER = (
    b'MicroPython (unix port) on iotpipe virtual board\r\nType "help()" for more information.\r\n'
)


class Emulator:
    def __init__(
        self, binary: str, root: Path, unique_id: str, to_host: Callable[[bytes], None]
    ) -> None:
        self.binary, self.root, self.unique_id = binary, root, unique_id
        self.to_host = to_host
        self.repl = Repl(self, BANNER)
        self.firmware: subprocess.Popen[bytes] | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.scanner = agent.EndScanner()
        self.cooked = False  # friendly REPL output: \n becomes \r\n, as on a terminal
        self.interrupted = False
        self.held = bytearray()  # host bytes after a Ctrl-C, until the REPL is up
        self.restart_at: float | None = None

    # --- rawrepl.Board ------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.to_host(data)

    def execute(self, code: bytes, raw: bool) -> None:
        if self.agent is None or self.agent.poll() is not None:
            self.agent = agent.spawn(self.binary, self.root, agent.AGENT, self.unique_id)
            self.scanner = agent.EndScanner()
        self.cooked = not raw
        _write(self.agent, agent.block(code, raw))

    def interrupt(self) -> None:
        if self.agent is not None:
            agent.interrupt(self.agent)

    def soft_reboot(self, run_main: bool) -> None:
        self._stop_agent()
        if run_main:
            self.start_firmware()

    # --- the firmware ---------------------------------------------------------------
    def start_firmware(self) -> None:
        self._stop_agent()
        self.repl.mode, self.repl.busy = Mode.FRIENDLY, False
        self.repl.queued.clear()
        self.interrupted, self.restart_at = False, None
        self.firmware = agent.spawn(self.binary, self.root, agent.FIRMWARE, self.unique_id)
        log.info("firmware running under MicroPython (pid %d)", self.firmware.pid)

    def from_host(self, data: bytes) -> None:
        if self.firmware is None:
            if self.restart_at is not None and 3 in data:  # Ctrl-C while it is down
                self.restart_at = None
                data = data[data.index(3) + 1 :]
                self.repl.start()
            self.repl.feed(data)
            return
        if self.interrupted:
            self.held += data
            return
        before, ctrl_c, after = data.partition(b"\x03")
        if before:
            _write(self.firmware, before)
        if ctrl_c:
            self.interrupted = True
            self.held += after
            agent.interrupt(self.firmware)

    def firmware_ended(self, code: int) -> None:
        self.firmware = None
        if code in (agent.HARD_RESET, agent.SOFT_RESET) and not self.interrupted:
            log.info("firmware reset itself")
            self.start_firmware()
        elif code == 0 or self.interrupted:
            log.info("firmware stopped (exit status %s); the REPL is up", code)
            self._enter_repl()
        else:
            log.warning("firmware exited with status %s; restarting as a watchdog would", code)
            self.restart_at = time.monotonic() + RESTART_DELAY_S

    def _enter_repl(self) -> None:
        self.interrupted = False
        self.repl.start()
        held, self.held = bytes(self.held), bytearray()
        self.repl.feed(held)

    # --- the agent ------------------------------------------------------------------
    def agent_output(self, data: bytes) -> None:
        text, ended = self.scanner.feed(data)
        if text:
            self.send(text.replace(b"\n", b"\r\n") if self.cooked else text)
        if ended:
            self.repl.finished()

    def agent_ended(self, code: int) -> None:
        self.agent = None
        if code == agent.HARD_RESET:
            log.info("machine.reset() from the REPL: starting the firmware")
            self.start_firmware()
        elif self.repl.mode is Mode.FRIENDLY:
            self.send(SOFT_REBOOT)
            self.start_firmware()
        else:  # sys.exit() or a crash in the raw REPL: a soft reboot that stays there
            self.repl.busy = False
            self.send(SOFT_REBOOT + RAW_BANNER + b">")

    def _stop_agent(self) -> None:
        if self.agent is not None:
            agent.stop(self.agent)
            self.agent = None

    def stop(self) -> None:
        self._stop_agent()
        if self.firmware is not None:
            agent.stop(self.firmware)
            self.firmware = None

    # --- the event loop -------------------------------------------------------------
    def tick(self) -> None:
        if self.restart_at is not None and time.monotonic() >= self.restart_at:
            self.start_firmware()

    def register(self, sel: selectors.BaseSelector) -> None:
        """Watch the output of whichever MicroPython processes run now."""
        for child, role in ((self.firmware, "firmware"), (self.agent, "agent")):
            if child is not None and child.stdout is not None:
                fd = child.stdout.fileno()
                if fd not in sel.get_map():
                    sel.register(fd, selectors.EVENT_READ, (role, child))

    def readable(self, sel: selectors.BaseSelector, key: selectors.SelectorKey) -> None:
        role, child = key.data
        current = child is (self.firmware if role == "firmware" else self.agent)
        data = os.read(key.fd, 65536)
        if data and current:
            self.send(data) if role == "firmware" else self.agent_output(data)
        if data:
            return
        sel.unregister(key.fd)
        code = child.wait(5)
        for pipe in (child.stdout, child.stdin):
            if pipe is not None:
                pipe.close()
        if current:
            self.firmware_ended(code) if role == "firmware" else self.agent_ended(code)


def _write(child: subprocess.Popen[bytes], data: bytes) -> None:
    try:
        if child.stdin is not None:
            child.stdin.write(data)
    except (BrokenPipeError, ValueError):
        pass  # it has just ended; its end is handled when its output closes
