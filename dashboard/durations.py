"""Durations written for people (``365d``, ``12h``, ``30m``, ``90s``), parsed at the edge.

Pure and dependency-free: ``iotpipe.settings`` imports it to parse ``--retention``.
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


def check_share_group(text: str) -> str:
    """An MQTT 5 shared-subscription group name: one topic level, no wildcards."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        raise ValueError(f"share group {text!r} must be 1-64 letters, digits, '_', '.' or '-'")
    return text
