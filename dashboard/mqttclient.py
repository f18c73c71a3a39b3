"""paho's client with fewer system calls per message, for draining a busy subscription.

paho reads each packet with three ``recv`` calls (the fixed header byte, the length bytes,
the body), handles one packet per ``select``, wakes its own loop through a socket pair for
every PUBACK it queues, and sends each PUBACK with its own ``send``. At some 11,000
readings/s those system calls were half of the network thread's time. This client,
still driven by paho's own ``loop_start`` thread (its reconnects, keepalive and locking
unchanged):

- reads up to 64 KiB per ``recv`` and serves paho's small reads from that buffer;
- handles every packet the buffer holds before paho waits in ``select`` again — never
  leaving bytes in the buffer, where ``select`` could not see them;
- queues a PUBACK from the loop thread itself without the socket-pair wake-up (the loop
  looks at ``want_write()`` before it waits), and sends the PUBACKs queued meanwhile in one
  ``send``.

PUBACKs still go out after ``on_message`` has returned, as paho does it: a message is
acknowledged no earlier than before. Only private paho methods of the 2.x line are
overridden; ``tests/test_dashboard_*`` run the real client against the real broker.
"""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

READ_BYTES = 65536
REFILLS_PER_READ = 16
"""Reads per ``loop_read`` before paho gets to write, keep alive and ``select`` again."""
PUBACK = 0x40


class BufferedClient(mqtt.Client):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._rsock: object = None
        self._refills = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._sock is not self._rsock:  # a new connection: nothing of the old one
            self._rsock, self._rbuf, self._rpos = self._sock, b"", 0
        if self._rpos >= len(self._rbuf):
            if self._refills >= REFILLS_PER_READ:
                raise BlockingIOError  # the buffer is empty: select sees what is left
            self._refills += 1
            self._rbuf, self._rpos = super()._sock_recv(READ_BYTES), 0
            if not self._rbuf:
                return b""  # the broker closed the connection
        start = self._rpos
        self._rpos = start + bufsize
        return self._rbuf[start : self._rpos]

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Every packet the buffer holds (and what up to 16 more reads bring)."""
        self._refills = 0
        rc = super().loop_read(max_packets)
        while (
            rc == MQTTErrorCode.MQTT_ERR_SUCCESS
            and self._sock is not None
            and self._sock is self._rsock
            and self._rpos < len(self._rbuf)
        ):
            rc = super().loop_read(max_packets)
        return rc

    def _packet_queue(
        self,
        command: int,
        packet: bytes | bytearray,
        mid: int,
        qos: int,
        info: mqtt.MQTTMessageInfo | None = None,
    ) -> MQTTErrorCode:
        if command == PUBACK and threading.current_thread() is self._thread:
            # The loop itself: it checks want_write() before its next select.
            self._out_packet.append(
                {
                    "command": command,
                    "mid": mid,
                    "qos": qos,
                    "pos": 0,
                    "to_process": len(packet),
                    "packet": packet,
                    "info": info,
                }
            )
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._packet_queue(command, packet, mid, qos, info)

    def loop_write(self) -> MQTTErrorCode:
        """The PUBACKs at the head of the queue as one packet, so one ``send``."""
        queued = self._out_packet
        if len(queued) > 1 and queued[0]["command"] == PUBACK and queued[0]["pos"] == 0:
            parts = []
            while queued and queued[0]["command"] == PUBACK and queued[0]["pos"] == 0:
                parts.append(queued.popleft()["packet"])
            data = b"".join(parts)
            queued.appendleft(
                {
                    "command": PUBACK,
                    "mid": 0,
                    "qos": 0,
                    "pos": 0,
                    "to_process": len(data),
                    "packet": data,
                    "info": None,
                }
            )
        return super().loop_write()
