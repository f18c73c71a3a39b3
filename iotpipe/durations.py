"""Durations written for people (``365d``, ``12h``, ``30m``, ``90s``), parsed at the edge.

Pure and dependency-free, in the shared layer: ``iotpipe.settings`` parses ``--retention``
with it, the dashboard its alert rules and ranges, `iotpipe export` its ``--since``.
"""

from __future__ import annotations

import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION_RE = re.compile(r"(\d{1,9})([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds in ``text`` such as ``365d``; a bare number is seconds."""
    text = text.strip().lower()
    if text.isdigit() and int(text) > 0:
        return float(text)
    match = DURATION_RE.fullmatch(text)
    if not match or int(match[1]) == 0:
        raise ValueError(f"{text!r} must be a duration above 0 such as 365d, 12h, 30m or 90s")
    return float(int(match[1]) * UNITS[match[2]])
