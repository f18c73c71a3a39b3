"""``<base>/<device>/cmd``: a request for the board, ``{"id","cmd","args","reply_to"}``.
Built by the dashboard (and by Home Assistant's "read now" button, discovery's
``READ_NOW_PAYLOAD``); read by the bridge and by a Wi-Fi board itself
(``firmware/payload.py``'s ``decode_request``, checked against the same vectors).

``id`` (1 to 64 characters, or an integer) is the asker's, ``cmd`` is required, ``args`` is
an object ({} when absent), ``reply_to`` is for MQTT 3.1.1 askers, which have no response
topic property. The answer (``mqttwire.answer``) goes to the MQTT 5 response topic, else
to ``reply_to``, else to ``<base>/<device>/reply``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeGuard

from iotpipe.topics import PayloadRejected, compact, json_object

MAX_REQUEST_BYTES = 4096
MAX_REPLY_TOPIC = 256
MAX_ID_CHARS = 64


@dataclass(frozen=True, slots=True)
class Request:
    id: str | int
    cmd: str
    args: dict[str, Any]
    reply_to: str | None  # None: the asker named no usable topic


class RequestRejected(PayloadRejected):
    """A request that is not valid; ``client_id`` is its id when that much could be read,
    so the error answer carries it."""

    def __init__(self, reason: str, detail: str, client_id: str | int | None = None) -> None:
        super().__init__(reason, detail)
        self.client_id = client_id


def encode_request(request: Request) -> bytes:
    # Non-ASCII escaped: the bytes the dashboard always sent.
    body = {"id": request.id, "cmd": request.cmd, "args": request.args}
    return compact({**body, "reply_to": request.reply_to}, ascii_only=True)


def usable_topic(name: object) -> bool:
    """A topic an answer can be published to: no wildcard, no NUL, not too long."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_REPLY_TOPIC
        and not any(c in name for c in "+#\0")
    )


def reply_to_of(payload: bytes) -> str | None:
    """The request's ``reply_to`` if it names a usable topic, read even from a request that
    is otherwise invalid: its error answer should reach the asker too."""
    try:
        reply_to = json.loads(payload).get("reply_to")
    except (ValueError, AttributeError, RecursionError):
        return None
    return reply_to if usable_topic(reply_to) else None


def parse_request(payload: bytes) -> Request:
    """A request, validated, or :class:`RequestRejected`."""
    try:
        obj = json_object(payload, MAX_REQUEST_BYTES)
    except PayloadRejected as exc:
        reason = "not_json" if exc.reason == "not_finite" else exc.reason  # NaN is no JSON
        raise RequestRejected(reason, _said(exc)) from None
    client_id = obj.get("id")
    if not _usable_id(client_id):
        raise RequestRejected("bad_id", "'id' must be a string of 1-64 characters or an integer")
    cmd, args = obj.get("cmd"), obj.get("args")
    if not isinstance(cmd, str) or not cmd or len(cmd) > MAX_ID_CHARS:
        raise RequestRejected("bad_cmd", "'cmd' must be a command name", client_id)
    if args is not None and not isinstance(args, dict):
        raise RequestRejected("bad_args", "'args' must be an object", client_id)
    reply_to = obj.get("reply_to")
    return Request(client_id, cmd, args or {}, reply_to if usable_topic(reply_to) else None)


def _usable_id(client_id: object) -> TypeGuard[str | int]:
    if isinstance(client_id, str):
        return 0 < len(client_id) <= MAX_ID_CHARS
    return isinstance(client_id, int) and not isinstance(client_id, bool)


def _said(exc: PayloadRejected) -> str:
    """The error answer's text for a payload that is no request at all."""
    if exc.reason == "not_object":
        return "the request must be a JSON object"
    if exc.reason == "not_json":
        return f"the request is {exc.detail}"
    if exc.reason == "not_finite":
        return f"the request is not JSON ({exc.detail})"
    return exc.detail
