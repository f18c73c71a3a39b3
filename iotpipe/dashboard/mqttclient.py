"""The dashboard's paho client: public API only, acknowledged by the application.

``manual_ack=True`` makes paho leave each QoS 1 PUBACK to us (``Client.ack``): the writer
acknowledges a message only after the transaction holding it committed. MQTT 5's Receive
Maximum (``RECEIVE_MAXIMUM``) is how many unacknowledged messages the broker may have
handed us at once: a window large enough that a commit of a few thousand readings keeps the
stream flowing, small enough that a store that cannot write holds little here.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

RECEIVE_MAXIMUM = 1000
SESSION_EXPIRY_S = 7 * 24 * 3600
"""How long the broker keeps our subscriptions and queued readings while we are away."""


def make_client(client_id: str) -> mqtt.Client:
    return mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
    )


def connect_properties() -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    return props


class NetworkLoop:
    """paho driven from our own thread through its public ``loop_read``, ``loop_write`` and
    ``loop_misc``, instead of ``loop_start``.

    paho's own loop handles one packet per ``select``; a drain of a busy session is then
    mostly system calls. Here, once the socket is readable, ``loop_read`` is called again
    for as long as it brings messages (``received`` tells), up to ``READS_PER_WAKE``; a
    packet that is not a message ends the round early, never the data (``select`` sees
    what is left). Writes — the acknowledgements from the writer thread, publishes from
    HTTP threads — wake the loop through paho's public ``on_socket_register_write``.
    Reconnects with the backoff paho's own loop would use.
    """

    READS_PER_WAKE = 2000

    def __init__(
        self,
        client: mqtt.Client,
        received: Callable[[], int],
        on_connect_fail: Callable[[], None],
        delays: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        self.client = client
        self.received = received
        self.on_connect_fail = on_connect_fail
        self.delays = delays
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = threading.Event()
        self._closing = False
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

    def _run(self) -> None:
        delay = self.delays[0]
        while not self._stopping.is_set():
            sock = self.client.socket()
            if isinstance(sock, socket.socket):  # an SSLSocket is one too
                self._once(sock)
            elif self._closing:
                self._stopping.wait(0.05)
            else:
                try:
                    self.client.reconnect()
                    delay = self.delays[0]
                except OSError:
                    self.on_connect_fail()
                    self._stopping.wait(delay)
                    delay = min(delay * 2, self.delays[1])

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
            self.client.loop_write()
        self.client.loop_misc()
