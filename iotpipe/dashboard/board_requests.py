"""The dashboard's requests to a board (``cmd`` in docs/protocol.md), answered through the
bridge or by a Wi-Fi board itself.

The dashboard publishes ``{"id", "cmd", "args", "reply_to"}`` to ``<base>/<device>/cmd``
with a ResponseTopic (ours alone: ``<base>/dashboard/<client-id>/reply``) and
CorrelationData; the bridge writes the command to the board and publishes the board's
answer ``{"id", "ok", "result"|"error"}`` to that topic with the same correlation data.
A Wi-Fi board speaks MQTT 3.1.1, which has neither property: it answers to ``reply_to``
(the same topic) with no correlation data, so such an answer is matched by its ``id``,
which is random and unique per request. Waiting requests are bounded; one that gets no
answer in time is a timeout, never a hang.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from iotpipe import topics
from iotpipe.counters import Counters
from iotpipe.dashboard.outputs import Outputs
from iotpipe.dashboard.params import BadRequest
from iotpipe.mqttwire.answer import Answer, parse_answer
from iotpipe.mqttwire.request import Request, encode_request
from iotpipe.transport import properties

CMD_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_PENDING = 64


class NoAnswer(Exception):
    """The board (or the bridge) did not answer in time."""


class Busy(Exception):
    """Too many commands are waiting for answers already."""


@dataclass(frozen=True, slots=True)
class BoardRequest:
    cmd: str
    args: dict[str, Any]


def parse_request(body: Any) -> BoardRequest:
    """The POST body: ``{"cmd": "read", "args": {...}}`` with ``args`` optional."""
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object such as {"cmd": "read"}')
    cmd = body.get("cmd")
    if not isinstance(cmd, str) or not CMD_RE.fullmatch(cmd):
        raise BadRequest(f"'cmd' must be a command name matching {CMD_RE.pattern}")
    args = body.get("args", {})
    if not isinstance(args, dict):
        raise BadRequest("'args' must be a JSON object")
    unknown = set(body) - {"cmd", "args"}
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(sorted(unknown))}")
    return BoardRequest(cmd, args)


@dataclass
class _Waiting:
    done: threading.Event
    answer: Answer | None = None


class BoardRequests:
    def __init__(self, outputs: Outputs, base: str, client_id: str, counters: Counters):
        self.outputs = outputs
        self.base = base
        self.reply_topic = topics.dashboard_reply(base, client_id)
        self.counters = counters
        self._waiting: dict[bytes, _Waiting] = {}
        self._lock = threading.Lock()
        outputs.handle(self.reply_topic, self.on_reply)

    def on_reply(self, msg: mqtt.MQTTMessage) -> None:
        """Called on paho's thread for each message on our reply topic."""
        answer = parse_answer(bytes(msg.payload))
        key = properties.correlation(msg) or str(answer.id).encode()
        with self._lock:
            waiting = self._waiting.get(key)
        if waiting is None:
            self.counters.inc("rejected", "late_or_unknown_answer")
            return
        waiting.answer = answer
        waiting.done.set()

    def request(self, device: str, command: BoardRequest, timeout: float) -> dict[str, Any]:
        request_id = secrets.token_hex(8)
        correlation = request_id.encode()
        waiting = _Waiting(threading.Event())
        with self._lock:
            if len(self._waiting) >= MAX_PENDING:
                raise Busy(f"{MAX_PENDING} commands are waiting for answers already")
            self._waiting[correlation] = waiting
        try:
            # reply_to for MQTT 3.1.1 boards, which lack the property
            request = Request(request_id, command.cmd, command.args, self.reply_topic)
            started = time.monotonic()
            self.outputs.publish(
                topics.topic(self.base, device, "cmd"),
                encode_request(request),
                properties.request(self.reply_topic, correlation),
            )
            if not waiting.done.wait(timeout) or waiting.answer is None:
                self.counters.inc("command_timeouts")
                raise NoAnswer(f"no answer from {device!r} within {timeout:g} s")
            self.counters.inc("commands_answered")
            latency_ms = round((time.monotonic() - started) * 1000, 1)
            return {**waiting.answer.as_dict(), "latency_ms": latency_ms}
        finally:
            with self._lock:
                self._waiting.pop(correlation, None)
