"""``mosquitto_pub -l`` written in Python on paho's public API: each line read from stdin
published as it is, nothing parsed, nothing stored.

    python benchmarks/paho_lines.py PORT TOPIC QOS < lines

The ceiling for any bridge on paho's public API, driven the way the bridge drives it
(``iotpipe/bridge/mqttio.py``): its own ``select`` on the input and paho's socket, a no-op
``on_socket_register_write`` so publishes are queued and written together, ``TCP_CORK``
around ``loop_write``, no ``on_publish``. ``bridge_bench.py`` runs it beside
``mosquitto_pub -l`` and the bridge; the gap between it and the C tool is paho's.
"""

from __future__ import annotations

import os
import select
import socket
import sys

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def main() -> None:
    port, topic, qos = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="paho-lines")
    client.on_socket_register_write = lambda client, userdata, sock: None
    client.max_inflight_messages_set(1000)  # the window the bridge's outbox keeps
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    while not client.is_connected():
        client.loop(1.0)
    sock = client.socket()
    assert isinstance(sock, socket.socket)
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    partial = b""
    publish = client.publish
    while True:
        wants = [sock] if client.want_write() else []
        readable, writable, _ = select.select([stdin, sock], wants, [], 1.0)
        if writable:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            client.loop_write()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        if sock in readable:
            client.loop_read()
        if stdin in readable:
            lines = (partial + os.read(stdin, 65536)).split(b"\n")
            partial = lines.pop()
            for line in lines:
                publish(topic, line, qos)
        client.loop_misc()


if __name__ == "__main__":
    main()
