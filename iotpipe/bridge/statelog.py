"""The bridge's log of state changes: one line per change, in one shape,
``event key=value …`` (logfmt). Logging only: the board's ``event`` lines and the
``iotpipe/<device>/event`` topic are ``iotpipe/wire.py`` and ``iotpipe/topics.py``.

A person reads it as a sentence; ``grep port_lost`` finds every unplugging; a log shipper
parses it without a pattern per message. Per-line detail stays at DEBUG elsewhere.
"""

from __future__ import annotations

import logging


def _value(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' ="\\'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def changed(log: logging.Logger, event: str, level: int = logging.INFO, **fields: object) -> None:
    if log.isEnabledFor(level):
        pairs = " ".join(f"{key}={_value(value)}" for key, value in fields.items())
        log.log(level, "%s %s", event, pairs)
