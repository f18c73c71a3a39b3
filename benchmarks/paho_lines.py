"""``mosquitto_pub -l`` written in Python on paho's public API: each line read from stdin
published as it is, nothing parsed, nothing stored.

    python benchmarks/paho_lines.py PORT TOPIC QOS < lines

The ceiling for any bridge on paho's public API, driven the way the bridge drives it
(``iotpipe/bridge/mqttio.py``): its own ``select`` on the input and paho's socket, a no-op
``on_socket_register_write`` so publishes are queued and written together, ``TCP_CORK``
around ``loop_write``, no ``on_publish`` at QoS 0; at QoS 1 no in-flight limit of paho's
own but a window of 100 unacknowledged messages, as the bridge's outbox keeps.
``bridge_bench.py`` runs it beside ``mosquitto_pub -l`` and the bridge; the gap between it
and the C tool is paho's.
"""

from __future__ import annotations

import os
import select
import socket
import sys

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

WINDOW = 100  # unacknowledged QoS 1 messages at a time (iotpipe/bridge/outbox.py)


class Window:
    def __init__(self) -> None:
        self.unacked = 0

    def acked(self, client: mqtt.Client, userdata: object, mid: int, *rest: object) -> None:
        self.unacked -= 1


def main() -> None:
    port, topic, qos = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="paho-lines")
    client.on_socket_register_write = lambda client, userdata, sock: None
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    window = Window()
    if qos:
        client.on_publish = window.acked
    client.connect("127.0.0.1", port)
    while not client.is_connected():
        client.loop(1.0)
    sock = client.socket()
    assert isinstance(sock, socket.socket)
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    waiting: list[bytes] = []  # lines read, not yet published (the window was full)
    partial = b""
    while True:
        wants = [sock] if client.want_write() else []
        inputs = [sock] if waiting else [stdin, sock]
        readable, writable, _ = select.select(inputs, wants, [], 1.0)
        if writable:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            client.loop_write()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        if sock in readable:
            client.loop_read()
        if stdin in readable:
            waiting = (partial + os.read(stdin, 65536)).split(b"\n")
            partial = waiting.pop()
            waiting.reverse()
        while waiting and (not qos or window.unacked < WINDOW):
            client.publish(topic, waiting.pop(), qos)
            window.unacked += qos
        client.loop_misc()


if __name__ == "__main__":
    main()
