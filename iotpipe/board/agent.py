"""The unix port dressed as a board: MicroPython processes of the virtual board.

Both run in the board's flash directory, remounted as ``/`` so that ``/main.py`` means
what it means on a board, and with ``machine.reset()`` / ``machine.soft_reset()`` that
end the process with an exit code the virtual board acts on:

- the **firmware** process imports ``main.py``, like a board after a reset;
- the **agent** process runs the code blocks of the (raw) REPL, one after another in one
  interpreter, so that state carries over between them as mpremote's file copy needs.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

HARD_RESET = 42
SOFT_RESET = 43
END = b"\x00iotpipe-end\x00"
"""Written by the agent after each block; never part of a block's own output."""

PRELUDE = """
import os, sys, vfs
_root = os.getcwd()
vfs.umount('/')
vfs.mount(vfs.VfsPosix(_root), '/')
os.chdir('/')
sys.path[:] = ['', '.frozen', '/lib']
import machine as _m
class _Machine:
    def __getattr__(self, name):
        return getattr(_m, name)
    def reset(self):
        sys.exit(@HARD@)
    def soft_reset(self):
        sys.exit(@SOFT@)
    def unique_id(self):
        return bytes.fromhex(os.getenv('IOTPIPE_UNIQUE_ID') or '000000')
sys.modules['machine'] = _Machine()
del _Machine
"""

FIRMWARE = """
try:
    os.stat('main.py')
except OSError:
    sys.exit(0)
import main
"""

AGENT = """
_g = {'__name__': '__main__'}
_in = sys.stdin.buffer
_out = sys.stdout
def _read(n):
    b = b''
    while len(b) < n:
        c = _in.read(n - len(b))
        if not c:
            sys.exit(0)
        b += c
    return b
while True:
    try:
        _head = _in.readline()
        if not _head:
            break
        _raw = _head[0] == 114
        _code = _read(int(_head[2:]))
    except KeyboardInterrupt:
        continue
    try:
        _err = None
        try:
            exec(_code if _raw else compile(_code, '<stdin>', 'single'), _g)
        except SystemExit as e:
            if e.args and e.args[0] in (@HARD@, @SOFT@):
                raise
            _out.write('\\x04\\x04' if _raw else '')
            sys.exit(@SOFT@)
        except BaseException as e:
            _err = e
        if _raw:
            _out.write('\\x04')
        if _err is not None:
            sys.print_exception(_err, _out)
        if _raw:
            _out.write('\\x04')
    except KeyboardInterrupt:
        pass
    _out.write(@END@)
"""


def _fill(script: str) -> str:
    """The MicroPython source with this module's constants in place."""
    for name, value in (("@HARD@", HARD_RESET), ("@SOFT@", SOFT_RESET), ("@END@", END.decode())):
        script = script.replace(name, repr(value))
    return script


def spawn(binary: str, root: Path, script: str, unique_id: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [binary, "-c", _fill(PRELUDE + script)],
        cwd=root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # tracebacks reach the serial port, as on a real board
        bufsize=0,
        env={**os.environ, "IOTPIPE_UNIQUE_ID": unique_id},
    )


def interrupt(child: subprocess.Popen[bytes]) -> None:
    """Ctrl-C: the unix port turns SIGINT into KeyboardInterrupt, as a board's UART does."""
    if child.poll() is None:
        child.send_signal(signal.SIGINT)


def stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.kill()
    child.wait(5)


def block(code: bytes, raw: bool) -> bytes:
    """What the agent reads for one code block."""
    return b"%s %d\n" % (b"r" if raw else b"f", len(code)) + code


class EndScanner:
    """Splits the agent's output at :data:`END`, even when a read cuts the marker."""

    def __init__(self) -> None:
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """-> (output to pass on, whether the block ended). One block at a time."""
        data = self.held + data
        at = data.find(END)
        if at >= 0:
            self.held = b""
            return data[:at], True
        keep = next((n for n in range(len(END) - 1, 0, -1) if data.endswith(END[:n])), 0)
        self.held = data[len(data) - keep :] if keep else b""
        return data[: len(data) - keep], False
