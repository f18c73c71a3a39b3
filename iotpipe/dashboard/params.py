"""HTTP query parameters and bodies become typed values here, or a 400 that says which.

Everything behind the routes trusts what this module returns.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from iotpipe.dashboard.series import DEFAULT_POINTS, MAX_POINTS
from iotpipe.wire import DEVICE_ID_RE, METRIC_RE

DEFAULT_SPAN_S = 3600.0


class BadRequest(ValueError):
    """Bad input from an HTTP client; the message names the parameter and what it accepts."""


class NotFound(LookupError):
    """An unknown device or metric; the message names it."""


@dataclass(frozen=True, slots=True)
class Range:
    since: float
    until: float
    points: int


def _time(args: Mapping[str, str], name: str, default: float) -> float:
    text = args.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"{name!r} must be a number (Unix seconds), not {text[:40]!r}") from None
    if not math.isfinite(value) or value < 0:
        raise BadRequest(f"{name!r} must be a finite number of Unix seconds >= 0")
    return value


def parse_range(args: Mapping[str, str], now: float | None = None) -> Range:
    """``since``/``until`` in Unix seconds (default: the last hour), ``points`` 2..MAX."""
    now = time.time() if now is None else now
    until = _time(args, "until", now + 1)
    since = _time(args, "since", until - DEFAULT_SPAN_S)
    if since >= until:
        raise BadRequest("'since' must be before 'until'")
    text = args.get("points") or str(DEFAULT_POINTS)
    if not text.isdigit() or not 2 <= int(text) <= MAX_POINTS:
        raise BadRequest(f"'points' must be a whole number from 2 to {MAX_POINTS}")
    return Range(since, until, int(text))


def device_id(text: str) -> str:
    if not DEVICE_ID_RE.fullmatch(text):
        raise NotFound(f"no device {text[:80]!r}")
    return text


def metric_name(args: Mapping[str, str], known: list[str]) -> str:
    name = args.get("metric")
    if not name:
        raise BadRequest("'metric' is required, one of: " + ", ".join(known))
    if not METRIC_RE.fullmatch(name) or name not in known:
        raise NotFound(f"no metric {name[:40]!r}; known: {', '.join(known)}")
    return name
