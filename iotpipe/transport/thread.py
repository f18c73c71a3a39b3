"""paho driven from a thread of our own through its public ``loop_read``, ``loop_write``
and ``loop_misc`` (the dashboard's ingest), instead of ``loop_start``.

paho's own loop handles one packet per ``select``; a drain of a busy session is then
mostly system calls. Here, once the socket is readable, ``loop_read`` is called again for
as long as it brings messages (``received`` tells), up to ``READS_PER_WAKE``; a packet
that is not a message ends the round early, never the data (``select`` sees what is left).
Writes — acknowledgements from another thread — wake the loop through paho's public
``on_socket_register_write``, and go out corked (``selectloop.corked``). Reconnects follow
``Backoff``: a connection lost waits its turn too, and only a CONNACK (``connected``) says a
connection worked — a broker that takes the TCP connection and then drops it (a refused
TLS client certificate, a refused login) is retried with backoff, not in a tight loop.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from iotpipe.transport.backoff import Backoff
from iotpipe.transport.selectloop import corked


class NetworkThread:
    READS_PER_WAKE = 2000

    def __init__(
        self,
        client: mqtt.Client,
        received: Callable[[], int],
        on_connect_fail: Callable[[], None],
    ) -> None:
        self.client = client
        self.received = received
        self.on_connect_fail = on_connect_fail
        self.backoff = Backoff()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = threading.Event()
        self._closing = False
        self._had_socket = False
        self._up = False
        self._thread = threading.Thread(target=self._run, name="mqtt-loop", daemon=True)
        client.on_socket_register_write = lambda c, userdata, sock: self.wake()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect once what is queued is sent (no reconnect after it), then end."""
        self._closing = True
        self.client.disconnect()
        deadline = time.monotonic() + timeout
        while self.client.socket() is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stopping.set()
        self.wake()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._wake_r.close()
            self._wake_w.close()

    def wake(self) -> None:
        with contextlib.suppress(OSError):  # already woken (BlockingIOError), or closed
            self._wake_w.send(b"\0")

    def connected(self) -> None:
        """The broker accepted us (CONNACK): the next loss starts the backoff afresh."""
        self._up = True
        self.backoff.worked()

    def _run(self) -> None:
        while not self._stopping.is_set():
            sock = self.client.socket()
            if isinstance(sock, socket.socket):  # an SSLSocket is one too
                self._had_socket = True
                self._once(sock)
            elif self._closing:
                self._stopping.wait(0.05)
            elif self._had_socket:  # lost: the next attempt waits its turn
                self._had_socket = False
                if not self._up:  # dropped before the broker ever said yes
                    self.on_connect_fail()
                self._up = False
                self._stopping.wait(self.backoff.failed())
            else:
                try:
                    self.client.reconnect()
                except OSError:
                    self.on_connect_fail()
                    self._stopping.wait(self.backoff.failed())

    def _once(self, sock: socket.socket) -> None:
        writing = [sock] if self.client.want_write() else []
        try:
            readable, _, _ = select.select([sock, self._wake_r], writing, [], 1.0)
        except (OSError, ValueError, TypeError):  # the socket was closed meanwhile
            readable = []
        if self._wake_r in readable:
            try:
                while self._wake_r.recv(4096):
                    pass
            except BlockingIOError:
                pass
        if sock in readable:
            for _ in range(self.READS_PER_WAKE):
                before = self.received()
                if self.client.loop_read() != mqtt.MQTT_ERR_SUCCESS:
                    break
                if self.received() == before:
                    break
        if self.client.want_write():
            with corked(self.client.socket()):  # None once a read found the connection lost
                self.client.loop_write()
        self.client.loop_misc()
