"""``mosquitto_sub -q 1 -c`` written in Python on paho's public API: a persistent session's
messages read and acknowledged, nothing parsed, nothing stored.

    python benchmarks/paho_drain.py PORT CLIENT_ID FILTER --subscribe    # make the session
    python benchmarks/paho_drain.py PORT CLIENT_ID FILTER --drain N       # read N from it

The login comes from ``IOTPIPE_MQTT_USER``/``IOTPIPE_MQTT_PASSWORD`` (never the command
line). The ceiling of any ingest on paho's public API, driven the way the dashboard's
``iotpipe/transport/thread.py`` drives it: MQTT 3.1.1 with a persistent session,
``manual_ack``, ``loop_read`` again while it brings messages, then every message of that
round acknowledged and written out corked. ``dashboard_bench.py`` runs it beside
``mosquitto_sub`` and the dashboard; the gap between it and the C tool is paho's. Prints
one JSON line: rate from the first message to the last, CPU microseconds per message.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import socket
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

READS_PER_WAKE = 2000  # as iotpipe/transport/thread.py


def make(client_id: str) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=False,
        protocol=mqtt.MQTTv311,
        manual_ack=True,
    )
    client.username_pw_set(os.environ["IOTPIPE_MQTT_USER"], os.environ["IOTPIPE_MQTT_PASSWORD"])
    return client


def connect(client: mqtt.Client, port: int) -> None:
    """Connected once the CONNACK is in (the session's first messages may be read with it:
    ``on_message`` is set before)."""
    client.connect("127.0.0.1", port)
    while not client.is_connected():
        client.loop(1.0)


def subscribe(client: mqtt.Client, topic_filter: str) -> None:
    granted: list[object] = []
    client.on_subscribe = lambda *args: granted.append(args)
    client.subscribe(topic_filter, 1)
    while not granted:
        client.loop(1.0)
    client.disconnect()


def drain(client: mqtt.Client, port: int, n: int) -> dict[str, float]:
    unacked: list[tuple[int, int]] = []
    started: list[tuple[float, float]] = []

    def received(cl: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if not started:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            started.append((time.perf_counter(), usage.ru_utime + usage.ru_stime))
        unacked.append((msg.mid, msg.qos))

    client.on_message = received
    connect(client, port)
    done = 0
    while done < n:
        sock = client.socket()
        assert isinstance(sock, socket.socket)
        readable, _, _ = select.select([sock], [sock] if client.want_write() else [], [], 1.0)
        if readable:
            for _ in range(READS_PER_WAKE):
                before = len(unacked)
                if client.loop_read() != mqtt.MQTT_ERR_SUCCESS or len(unacked) == before:
                    break
        done += len(unacked)
        for mid, qos in unacked:
            client.ack(mid, qos)
        unacked.clear()
        if client.want_write():
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            client.loop_write()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        client.loop_misc()
    seconds = time.perf_counter() - started[0][0]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - started[0][1]
    client.disconnect()
    return {"rate": (n - 1) / seconds, "cpu_us": cpu / (n - 1) * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("client_id")
    parser.add_argument("filter")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--subscribe", action="store_true")
    what.add_argument("--drain", type=int, metavar="N")
    args = parser.parse_args()
    client = make(args.client_id)
    if args.subscribe:
        connect(client, args.port)
        subscribe(client, args.filter)
    else:
        print(json.dumps(drain(client, args.port, args.drain)), flush=True)


if __name__ == "__main__":
    main()
