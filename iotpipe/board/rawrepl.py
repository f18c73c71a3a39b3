"""The REPL a real board offers on its serial port, for the virtual board.

The unix port has no raw REPL, yet mpremote (and ``iotpipe board deploy``) speak nothing
else. This is the byte protocol of MicroPython's ``shared/runtime/pyexec.c``, as a pure
state machine: bytes from the host go in through :meth:`Repl.feed`; what a board would
answer goes out through the :class:`Board` it drives, which also executes the code blocks
(with the real unix port, see :mod:`iotpipe.board.agent`).

- friendly REPL ``>>>``: Ctrl-A raw REPL, Ctrl-B banner, Ctrl-C new prompt, Ctrl-D soft
  reboot (the firmware starts again), a typed line is run as one statement;
- raw REPL ``>``: bytes collect until Ctrl-D, answered ``OK``, then the output, ``\\x04``,
  the exception text, ``\\x04`` and a new ``>``; Ctrl-D on an empty block is a soft reboot
  that stays in the raw REPL (as mpremote expects); Ctrl-B back to friendly;
- raw-paste mode (``\\x05A\\x01``), with its flow-control window;
- Ctrl-C while code runs interrupts it (KeyboardInterrupt), like on a board.
"""

from __future__ import annotations

import enum
from typing import Protocol

CTRL_A, CTRL_B, CTRL_C, CTRL_D, CTRL_E = 1, 2, 3, 4, 5
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
SOFT_REBOOT = b"MPY: soft reboot\r\n"
PASTE_WINDOW = 128  # half of a 256-byte stdin buffer, as MicroPython's default
PROMPT = b">>> "


class Board(Protocol):
    def send(self, data: bytes) -> None:
        """Write bytes to the host."""

    def execute(self, code: bytes, raw: bool) -> None:
        """Run code, writing its output (raw: then ``\\x04``, the exception, ``\\x04``);
        call :meth:`Repl.finished` when done."""

    def interrupt(self) -> None:
        """Ctrl-C while code runs: raise KeyboardInterrupt in it."""

    def soft_reboot(self, run_main: bool) -> None:
        """Fresh interpreter state; with run_main the firmware starts (main.py)."""


class Mode(enum.Enum):
    FRIENDLY = "friendly"
    RAW = "raw"
    PASTE = "paste"


class Repl:
    def __init__(self, board: Board, banner: bytes) -> None:
        self.board = board
        self.banner = banner
        self.mode = Mode.FRIENDLY
        self.line = bytearray()
        self.busy = False
        self.queued = bytearray()  # bytes that arrived while code ran
        self.window_left = PASTE_WINDOW

    def start(self) -> None:
        """The program stopped: show the friendly REPL, as a board does."""
        self.mode = Mode.FRIENDLY
        self.line.clear()
        self.board.send(self.banner + PROMPT)

    def feed(self, data: bytes) -> None:
        for i, byte in enumerate(data):
            if self.busy:
                if byte == CTRL_C:
                    self.board.interrupt()
                else:
                    self.queued += data[i : i + 1]
                continue
            self._byte(byte)

    def finished(self) -> None:
        """The code block ended and its output (with raw framing) is written."""
        self.busy = False
        self.board.send(PROMPT if self.mode is Mode.FRIENDLY else b">")
        pending, self.queued = bytes(self.queued), bytearray()
        self.feed(pending)

    def _byte(self, byte: int) -> None:
        if self.mode is Mode.RAW:
            self._raw(byte)
        elif self.mode is Mode.PASTE:
            self._paste(byte)
        else:
            self._friendly(byte)

    def _run(self, code: bytes, raw: bool) -> None:
        self.busy = True
        self.line.clear()
        self.board.execute(code, raw)

    def _raw(self, byte: int) -> None:
        if byte == CTRL_A:
            if bytes(self.line) == b"\x05A":
                self._enter_paste()
                return
            self.line.clear()
            self.board.send(RAW_BANNER + b">")
        elif byte == CTRL_B:
            self.board.send(b"\r\n")
            self.start()
        elif byte == CTRL_C:
            self.line.clear()
        elif byte == CTRL_D:
            self.board.send(b"OK")
            if not self.line:
                self.board.send(b"\r\n" + SOFT_REBOOT)
                self.board.soft_reboot(run_main=False)
                self.board.send(RAW_BANNER + b">")
                return
            self._run(bytes(self.line), raw=True)
        else:
            self.line.append(byte)

    def _enter_paste(self) -> None:
        self.mode = Mode.PASTE
        self.line.clear()
        self.window_left = PASTE_WINDOW
        window = PASTE_WINDOW.to_bytes(2, "little")
        self.board.send(b"R\x01" + window + b"\x01")

    def _paste(self, byte: int) -> None:
        if byte in (CTRL_C, CTRL_D):
            self.board.send(b"\x04")  # end of data acknowledged
            self.mode = Mode.RAW
            if byte == CTRL_C:
                self.board.send(b"\x04KeyboardInterrupt:\r\n\x04>")
                self.line.clear()
                return
            self._run(bytes(self.line), raw=True)
            return
        self.line.append(byte)
        self.window_left -= 1
        if self.window_left == 0:
            self.window_left = PASTE_WINDOW
            self.board.send(b"\x01")  # another window of data may come

    def _friendly(self, byte: int) -> None:
        if byte == CTRL_A:
            self.mode = Mode.RAW
            self.line.clear()
            self.board.send(b"\r\n" + RAW_BANNER + b">")
        elif byte == CTRL_B:
            self.board.send(b"\r\n")
            self.start()
        elif byte == CTRL_C:
            self.line.clear()
            self.board.send(b"\r\n" + PROMPT)
        elif byte == CTRL_D:
            self.board.send(b"\r\n" + SOFT_REBOOT)
            self.board.soft_reboot(run_main=True)
        elif byte == 13:
            self.board.send(b"\r\n")
            if self.line.strip():
                self._run(bytes(self.line), raw=False)
            else:
                self.line.clear()
                self.board.send(PROMPT)
        elif byte in (8, 127):
            if self.line:
                del self.line[-1]
                self.board.send(b"\x08 \x08")
        elif byte >= 32 or byte == 9:
            self.line.append(byte)
            self.board.send(bytes([byte]))
