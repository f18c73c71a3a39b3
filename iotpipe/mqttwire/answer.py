"""The answer to a request, ``{"id","ok","result"}`` or ``{"id","ok","error"}``, with the
asker's ``id`` (null when the request's could not be read). Built by the bridge (for the
board's answer, a refusal or a timeout) and by a Wi-Fi board itself
(``firmware/payload.py``); read by the dashboard. It goes where the request said
(``mqttwire.request``), else to ``<base>/<device>/reply``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iotpipe.topics import PayloadRejected, compact, json_object

MAX_ANSWER_BYTES = 16 * 1024
MAX_ERROR_CHARS = 500  # what a person is shown of an error


@dataclass(frozen=True, slots=True)
class Answer:
    id: str | int | None
    ok: bool
    result: Any = None
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The answer as the dashboard's API returns it: ``result`` or ``error``."""
        value = {"result": self.result} if self.ok else {"error": self.error}
        return {"id": self.id, "ok": self.ok, **value}


def encode_answer(client_id: str | int | None, ok: bool, value: Any) -> bytes:
    """``value`` is the result when ``ok``, else the error's text."""
    return compact({"id": client_id, "ok": ok, "result" if ok else "error": value})


def parse_answer(payload: bytes) -> Answer:
    obj = json_object(payload, MAX_ANSWER_BYTES)
    ok, client_id = obj.get("ok"), obj.get("id")
    if not isinstance(ok, bool):
        raise PayloadRejected("bad_answer", "an answer is an object with 'ok'")
    if client_id is not None and (
        isinstance(client_id, bool) or not isinstance(client_id, str | int)
    ):
        raise PayloadRejected("bad_answer", "an answer's 'id' is text, a number or null")
    if ok:
        return Answer(client_id, True, result=obj.get("result"))
    return Answer(client_id, False, error=str(obj.get("error", ""))[:MAX_ERROR_CHARS])
