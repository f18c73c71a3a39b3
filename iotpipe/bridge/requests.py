"""Requests from MQTT to the board and the board's answers back: matching, not I/O.

Many clients may send at once and two may pick the same ``id``, so each request gets a
fresh id of the bridge's own on its way to the board and its answer is mapped back to the
asker's id, reply topic and correlation data. At most ``max_on_board`` requests are out at
the board at a time (a real board's UART buffer is small); the rest wait, bounded. A
request not answered within ``timeout`` gets an error answer. Every method returns the
actions to take (lines to write, replies to publish); the caller does the I/O.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from iotpipe import wire
from iotpipe.mqttwire import request as contract
from iotpipe.mqttwire.answer import encode_answer

MAX_COMMAND_LINE = 256  # the firmware's MAX_COMMAND: a longer line is refused by the board


@dataclass(frozen=True, slots=True)
class Route:
    """Where an answer goes: a topic, and the MQTT 5 correlation data to send with it."""

    topic: str
    correlation: bytes | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    route: Route
    payload: bytes


@dataclass(frozen=True, slots=True)
class Request:
    client_id: str | int | None
    cmd: str
    args: dict[str, Any] | None
    route: Route


def route_for(payload: bytes, response_topic: object, correlation: object, default: str) -> Route:
    """MQTT 5 response topic first, then a ``reply_to`` in the request, then ``default``."""
    corr = bytes(correlation) if isinstance(correlation, bytes | bytearray) else None
    if contract.usable_topic(response_topic):
        return Route(str(response_topic), corr)
    return Route(contract.reply_to_of(payload) or default, corr)


def parse_request(payload: bytes, route: Route) -> Request:
    """A command request from MQTT, validated by the contract, or
    :class:`iotpipe.mqttwire.request.RequestRejected`."""
    request = contract.parse_request(payload)
    return Request(request.id, request.cmd, request.args, route)


@dataclass
class _Pending:
    request: Request
    deadline: float
    line: bytes
    sent: bool = False


@dataclass
class Actions:
    write: list[bytes]
    replies: list[Reply]


class Router:
    def __init__(self, timeout: float, max_on_board: int = 4, max_waiting: int = 1000) -> None:
        self.timeout = timeout
        self.max_on_board = max_on_board
        self.max_waiting = max_waiting
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._queue: deque[str] = deque()
        self._on_board = 0
        self._prefix = os.urandom(3).hex()  # a new bridge never takes an old bridge's answer
        self._numbers = itertools.count(1)

    def submit(self, request: Request, now: float) -> Actions:
        board_id = f"{self._prefix}-{next(self._numbers)}"
        line = wire.encode_command(board_id, request.cmd, request.args)
        if len(line) > MAX_COMMAND_LINE:
            return self._refuse(request, f"the command is over {MAX_COMMAND_LINE} bytes")
        with self._lock:
            if len(self._pending) >= self.max_waiting:
                return self._refuse(request, "busy: too many requests waiting for the board")
            self._pending[board_id] = _Pending(request, now + self.timeout, line)
            self._queue.append(board_id)
            return Actions(self._release(), [])

    def _refuse(self, request: Request, error: str) -> Actions:
        reply = Reply(request.route, encode_answer(request.client_id, False, error))
        return Actions([], [reply])

    def _release(self) -> list[bytes]:
        lines = []
        while self._queue and self._on_board < self.max_on_board:
            pending = self._pending.get(self._queue.popleft())
            if pending is not None:
                pending.sent = True
                self._on_board += 1
                lines.append(pending.line)
        return lines

    def answered(self, answer: wire.Answer) -> tuple[Reply | None, Actions]:
        """The reply for the asker, or None when the answer matches no request."""
        with self._lock:
            pending = self._pending.pop(answer.id, None) if answer.id else None
            if pending is None:
                return None, Actions([], [])
            self._on_board -= pending.sent
            request = pending.request
            value = answer.result if answer.ok else answer.error
            reply = Reply(request.route, encode_answer(request.client_id, answer.ok, value))
            return reply, Actions(self._release(), [])

    def expire(self, now: float) -> Actions:
        """Error answers for requests past their deadline."""
        replies = []
        with self._lock:
            late = [bid for bid, p in self._pending.items() if p.deadline <= now]
            for board_id in late:
                pending = self._pending.pop(board_id)
                self._on_board -= pending.sent
                error = f"timeout: the board did not answer within {self.timeout:g} s"
                request = pending.request
                replies.append(Reply(request.route, encode_answer(request.client_id, False, error)))
            return Actions(self._release(), replies)

    def fail_all(self, error: str) -> Actions:
        """The port is gone: every waiting request gets ``error`` now."""
        with self._lock:
            replies = [
                Reply(p.request.route, encode_answer(p.request.client_id, False, error))
                for p in self._pending.values()
            ]
            self._pending.clear()
            self._queue.clear()
            self._on_board = 0
            return Actions([], replies)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)
