"""A cheaper way through for the payload the dashboard sees most: the bridge's own JSON.

The bridge writes telemetry compactly, keys in one order (``Telemetry.to_json``). One
compiled pattern recognises exactly that shape, with every field already in the form the
contract allows (device, boot and metric names as ``iotpipe.wire`` defines them; plain
decimal numbers that cannot overflow), so a match needs no further checks. Anything else —
spaces, another key order, escapes, exponents, a long or odd number, too many metrics —
returns None and takes ``topics.parse_telemetry``, which alone decides what is rejected
and why. ``tests/test_dashboard_units.py`` holds the two to the same answers, so this is
an optimisation, never a second contract.
"""

from __future__ import annotations

import re

from iotpipe.topics import MAX_PAYLOAD_BYTES, Telemetry
from iotpipe.wire import MAX_METRICS

# Integers without a sign or leading zeros; decimals without an exponent, short enough to
# stay finite. "-0" is left out: JSON makes it the int 0, float("-0") would be -0.0.
_WHOLE = rb"0|[1-9][0-9]{0,39}"
_NUMBER = rb"-?[1-9][0-9]{0,15}(?:\.[0-9]{1,20})?|-?0\.[0-9]{1,20}|0"
_NAME = rb"[a-z][a-z0-9_]{0,31}"
_PAIR = rb'"' + _NAME + rb'":(?:' + _NUMBER + rb")"
_PAYLOAD = re.compile(
    rb'\{"device":"([A-Za-z0-9][A-Za-z0-9_.-]{0,63})","boot":"([0-9a-f]{8})",'
    rb'"seq":(' + _WHOLE + rb'),"ts":(' + _NUMBER + rb'),"uptime_ms":(' + _WHOLE + rb"),"
    rb'"metrics":\{((?:' + _PAIR + rb",){0,31}" + _PAIR + rb")\}\}"
)
_PAIRS = re.compile(rb'"(' + _NAME + rb')":(' + _NUMBER + rb")")


def parse(payload: bytes) -> Telemetry | None:
    """The reading, when ``payload`` is in exactly the bridge's format; else None."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    found = _PAYLOAD.fullmatch(payload)
    if found is None:
        return None
    device, boot, seq, ts, uptime, body = found.groups()
    # A repeated name keeps its first place and its last value, as json.loads does.
    metrics = {name.decode(): float(value) for name, value in _PAIRS.findall(body)}
    if len(metrics) > MAX_METRICS:
        return None
    return Telemetry(device.decode(), boot.decode(), int(seq), float(ts), int(uptime), metrics)
