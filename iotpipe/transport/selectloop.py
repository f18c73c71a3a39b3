"""Driving one paho client from the caller's own ``select`` loop (the bridge's).

paho's ``loop_start`` thread would take the GIL from the thread that reads the serial port
for every message; the bridge instead waits on the port and the MQTT sockets in one
``select`` and calls paho's public ``loop_read``/``loop_write``/``loop_misc`` itself
(``socket()`` and ``want_write()`` say what to wait for). Only the blocking TCP (and TLS)
connect runs on a short-lived thread, so an unreachable broker never stops the port being
read; when to try again is ``Backoff``'s policy.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator

import paho.mqtt.client as mqtt

from iotpipe.transport.backoff import Backoff

MISC_EVERY_S = 1.0
CONNACK_TIMEOUT_S = 30.0
CORK: int | None = getattr(socket, "TCP_CORK", None)  # Linux


class SelectDriver:
    def __init__(self, client: mqtt.Client, on_fail: Callable[[str], None]) -> None:
        self.client = client
        self.on_fail = on_fail
        self.backoff = Backoff()
        self._enabled = False
        self._thread: threading.Thread | None = None
        self._error: str | None = None
        self._next_attempt = 0.0
        self._last_misc = 0.0
        self._attempt_at = 0.0
        self._up = False
        # With a register-write callback, paho queues a publish instead of writing it at
        # once (one loop_write per message); the loop's select then writes them together.
        client.on_socket_register_write = self._write_wanted

    def _write_wanted(self, client: mqtt.Client, userdata: object, sock: object) -> None:
        pass  # the loop asks want_write() before every select

    def enable(self) -> None:
        self._enabled = True

    @property
    def connecting(self) -> bool:
        """A connect runs in the background: the loop should look again soon."""
        return self._thread is not None

    def socket(self) -> socket.socket | None:
        """The socket to wait on, or None while not connected (or connecting)."""
        if self._thread is not None:
            return None
        sock = self.client.socket()
        return sock if isinstance(sock, socket.socket) else None

    def want_write(self) -> bool:
        return self.client.want_write()

    def readable(self) -> None:
        rc = self.client.loop_read()
        sock = self.client.socket()
        # TLS may hold decrypted bytes that select cannot see.
        while rc == mqtt.MQTT_ERR_SUCCESS and isinstance(sock, ssl.SSLSocket) and sock.pending():
            rc = self.client.loop_read()

    def writable(self) -> None:
        """Everything paho has queued: it sends packet by packet, so the socket is corked
        meanwhile and the kernel sends full segments, not one per reading."""
        with corked(self.client.socket()):
            self.client.loop_write()

    def tick(self, now: float) -> None:
        """Keepalive while connected; a connection attempt when one is due."""
        if self._thread is not None:
            if self._thread.is_alive():
                return
            self._thread = None
            if self._error is not None:
                self.on_fail(self._error)
                self.lost(now)
            return
        if self.client.socket() is not None:
            if not self._up and now - self._attempt_at > CONNACK_TIMEOUT_S:
                self.on_fail(f"no answer to CONNECT within {CONNACK_TIMEOUT_S:.0f} s")
                self.client.disconnect()  # paho's on_disconnect schedules the next attempt
                self.lost(now)
            elif now - self._last_misc >= MISC_EVERY_S:
                self._last_misc = now
                self.client.loop_misc()
        elif self._enabled and now >= self._next_attempt:
            self._next_attempt = float("inf")  # until this attempt has an outcome
            self._attempt_at = now
            self._thread = threading.Thread(target=self._connect, name="mqtt-connect")
            self._thread.daemon = True
            self._thread.start()

    def _connect(self) -> None:
        try:
            self.client.reconnect()
            self._error = None
        except Exception as exc:  # a thread boundary: every failure is a failed attempt
            self._error = str(exc) or type(exc).__name__

    def connected(self) -> None:
        self._up = True
        self.backoff.worked()

    def lost(self, now: float) -> None:
        self._up = False
        self._next_attempt = now + self.backoff.failed()

    def flush(self, done: Callable[[], bool], timeout: float) -> bool:
        """Run the network alone until ``done()`` (used when stopping)."""
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            sock = self.socket()
            if sock is None:
                return False
            wants = [sock] if self.want_write() else []
            readable, writable, _ = select.select([sock], wants, [], 0.05)
            if readable:
                self.readable()
            if writable:
                self.writable()
        return done()

    def disable(self) -> None:
        self._enabled = False
        if self._thread is not None:
            self._thread.join(10)


@contextlib.contextmanager
def corked(sock: object) -> Iterator[None]:
    """TCP_CORK on the socket for the block (Linux): paho writes packet by packet, and
    corked the kernel sends full segments instead of one per packet."""
    if CORK is None or not isinstance(sock, socket.socket) or sock.fileno() == -1:
        yield  # not Linux, or paho has just closed the socket (a lost connection)
        return
    sock.setsockopt(socket.IPPROTO_TCP, CORK, 1)
    try:
        yield
    finally:
        if sock.fileno() != -1:  # paho may have closed it on an error meanwhile
            sock.setsockopt(socket.IPPROTO_TCP, CORK, 0)
