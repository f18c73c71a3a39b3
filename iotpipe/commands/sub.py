"""`iotpipe sub [TOPIC]`: a friendlier ``mosquitto_sub -v`` for iotpipe's topics.

Each message becomes one line, in columns: time (UTC; a reading's own ``ts``, else when it
arrived), device, kind, then the payload decoded with the contract (``iotpipe.topics``,
``iotpipe.mqttwire``): a reading as ``seq`` and ``metric=value`` pairs, a status as its
word, every other kind checked and shown as compact text. A payload that breaks the
contract is shown as such, with the reason, and never stops the command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt

from iotpipe import transport
from iotpipe.errors import UserError
from iotpipe.mqttlogin import SETTINGS as LOGIN_SETTINGS
from iotpipe.mqttlogin import Login, LoginFailed, connect
from iotpipe.mqttwire.alert import parse_alert
from iotpipe.mqttwire.answer import parse_answer
from iotpipe.mqttwire.event import parse_event
from iotpipe.mqttwire.meta import parse_meta
from iotpipe.mqttwire.request import parse_request
from iotpipe.settings import add_settings
from iotpipe.topics import PayloadRejected, parse_status, parse_telemetry, split

TEXT_LIMIT = 120
# Each kind's parser: a payload it rejects is shown with the reason.
PARSERS: dict[str, Callable[[bytes], Any]] = {
    "status": parse_status,
    "meta": parse_meta,
    "event": parse_event,
    "cmd": parse_request,
    "reply": parse_answer,
    "alert": parse_alert,
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "topic",
        nargs="?",
        default=None,
        metavar="TOPIC",
        help="topic filter, wildcards allowed (default: BASE/#, every iotpipe message)",
    )
    add_settings(parser, *LOGIN_SETTINGS, "base-topic", "log-level")
    parser.add_argument(
        "--count",
        type=_count,
        default=0,
        metavar="N",
        help="stop after N messages (default: 0, run until Ctrl-C)",
    )


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number, 0 or more")
    return int(text)


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S.%f")[:-3]


def _short(payload: bytes) -> str:
    text = payload.decode("utf-8", errors="replace")
    with contextlib.suppress(ValueError):
        text = json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    text = text.replace("\n", "\\n")
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


class Formatter:
    """Turns messages into aligned lines; columns widen to the widest value seen so far."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.widths: dict[str, int] = {"device": 16, "kind": 9}

    def _col(self, name: str, text: str) -> str:
        self.widths[name] = max(self.widths.get(name, 0), len(text))
        return text.ljust(self.widths[name])

    def _reading(self, payload: bytes) -> tuple[float, str]:
        reading = parse_telemetry(payload)
        cells = [f"seq {reading.seq:<6}"]
        for metric, value in reading.metrics.items():
            cells.append(f"{metric}=" + self._col("m:" + metric, f"{value:.6g}"))
        return reading.ts, "  ".join(cells)

    def line(self, topic: str, payload: bytes, now: float) -> str:
        try:
            device, kind = split(self.base, topic)
        except PayloadRejected:
            return f"{_clock(now)}  {topic}  {_short(payload)}"
        ts, body = now, _short(payload) or "(cleared)"
        try:
            if kind == "telemetry":
                ts, body = self._reading(payload)
            elif payload:  # an empty retained payload clears the topic
                PARSERS[kind](payload)
        except PayloadRejected as exc:
            body = f"✗ bad payload ({exc.reason}: {exc.detail})  {_short(payload)}"
        return f"{_clock(ts)}  {self._col('device', device)}  {self._col('kind', kind)}  {body}"


def subscribe(
    session: transport.Session, topic: str, count: int, show: Callable[[str], None], base: str
) -> None:
    """Print messages until ``count`` have been shown (0: until interrupted)."""
    formatter = Formatter(base)
    seen = 0

    def on_message(msg: mqtt.MQTTMessage) -> None:
        nonlocal seen
        if count and seen >= count:
            return
        seen += 1
        show(formatter.line(msg.topic, bytes(msg.payload), time.time()))
        if count and seen >= count:
            session.client.disconnect()

    session.handle(topic, on_message)
    session.run_forever()


def run(args: argparse.Namespace) -> int:
    topic = args.topic or f"{args.base_topic}/#"
    try:
        session = connect(Login.from_args(args))
    except LoginFailed as exc:
        raise UserError(str(exc)) from None

    def show(text: str) -> None:
        print(text, flush=True)

    print(f"# {args.broker}  {topic}", file=sys.stderr, flush=True)
    try:
        subscribe(session, topic, args.count, show, args.base_topic)
    finally:
        session.client.disconnect()
    return 0
