"""Opening, reading and writing a serial port: mechanism only, it raises on failure.

Opened with ``serial.serial_for_url``, so a path, ``socket://`` and ``rfc2217://`` all
work, and made something ``select`` can wait on: a POSIX port (a USB serial device, a pty)
is read straight from its file descriptor, one system call for whatever has arrived.
Ports without one (``rfc2217://``, ``socket://``, Windows) get a small thread that reads
with pyserial and hands the bytes over a socket pair, so the bridge's one loop waits on
every kind of port the same way.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading

import serial

CHUNK = 65536
READ_TIMEOUT_S = 0.5


def open_port(url: str, baud: int) -> serial.SerialBase:
    """A path (/dev/ttyUSB0, /dev/serial/by-id/…) or a pyserial URL (socket://, rfc2217://).

    pyserial empties the input buffer when it opens a POSIX port, so readings the board
    wrote while no bridge was reading are gone here; the bridge gets them back by asking
    the board to ``replay`` after its mark whenever a port opens (``continuity``)."""
    port: serial.SerialBase = serial.serial_for_url(url, baudrate=baud, timeout=READ_TIMEOUT_S)
    return port


class PortLost(OSError):
    """The port went away (unplugged, the pty's other side closed, the link dropped)."""


class PortSource:
    def __init__(self, port: serial.SerialBase) -> None:
        self.port = port
        self._fd: int | None = None
        self._pair: tuple[socket.socket, socket.socket] | None = None
        self._stop = threading.Event()
        if hasattr(port, "fileno"):
            self._fd = port.fileno()
        else:
            self._pair = socket.socketpair()
            threading.Thread(target=self._relay, name="port-relay", daemon=True).start()

    def fileno(self) -> int:
        return self._fd if self._fd is not None else self._pair[1].fileno()  # type: ignore[index]

    def read(self) -> bytes:
        """What has arrived (call when select says readable); raises PortLost at the end."""
        try:
            data = self._read_now()
        except BlockingIOError:
            return b""
        except OSError as exc:
            raise PortLost(exc.errno, f"read failed: {exc.strerror}") from None
        if not data:
            raise PortLost("the port reports data but returned none (disconnected?)")
        return data

    def _read_now(self) -> bytes:
        if self._fd is not None:
            return os.read(self._fd, CHUNK)
        return self._pair[1].recv(CHUNK)  # type: ignore[index]

    def write(self, data: bytes) -> None:
        self.port.write(data)

    def close(self) -> None:
        self._stop.set()
        if self._pair is not None:
            for end in self._pair:
                end.close()
        with contextlib.suppress(OSError, serial.SerialException):
            self.port.close()

    def _relay(self) -> None:
        assert self._pair is not None
        sender = self._pair[0]
        try:
            while not self._stop.is_set():
                data = self.port.read(self.port.in_waiting or 1)
                if data:
                    sender.sendall(data)
        except (OSError, serial.SerialException):
            pass
        finally:  # the loop sees the end of the pair as the end of the port
            with contextlib.suppress(OSError):
                sender.shutdown(socket.SHUT_WR)
