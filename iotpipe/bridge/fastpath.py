"""A cheaper way through for the line a board writes most: its next reading.

Once the full parser (``iotpipe.wire``) accepted a reading from this board, its device id,
boot id and metric names are known to be valid, and so is the shape its firmware writes
them in (``firmware/wire.py``: always the same members in the same order). A later line
of exactly that shape needs only what can still differ checked — the seq, the uptime and
the numbers — and one regular expression for the whole line does that, with no JSON
decoding and no dict. A number already written the way ``repr`` writes a float (most
are) is copied into the telemetry as it is; the others are converted one by one.
Anything else — another type, device or boot, other metrics or another order, an
exponent, whitespace, a line the expression does not match — returns None and takes the
full parser, which alone decides what is rejected and why. ``tests/test_bridge_units.py``
holds the two to the same vectors and to generated lines, so this is an optimisation,
never a second contract.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from iotpipe import wire

# A JSON number in plain decimal notation that is finite and becomes the same float
# through ``float()`` as through ``json``: at most 15 significant digits, no exponent,
# and not "-0" (which JSON reads as the int 0, not the float -0.0).
_NUMBER = rb"(?:-?[1-9][0-9]{0,14}(?:\.[0-9]{1,15})?|-?0\.[0-9]{1,15}|0)"
# A number written exactly as ``repr(float(text))`` writes it, so it is copied unchanged:
# a point with at least one digit after it and no trailing zero (but "x.0"), at most 15
# significant digits (repr's shortest round trip is then the text itself), and below 1
# no more than three zeros after the point (repr writes 1e-05 from there).
_CANONICAL = (
    rb"-?(?:[1-9][0-9]{0,8}\.(?:0|[0-9]{0,5}[1-9])|0\.(?:0|0{0,3}[1-9](?:[0-9]{0,4}[1-9])?))"
)
_COUNT = rb"(0|[1-9][0-9]*)"  # a JSON int that is not negative, written as str() writes it
SHAPES_MAX = 16  # shapes of one boot kept compiled (sensors that fail and come back)


@dataclass(frozen=True, slots=True)
class _Shape:
    """The expressions for a reading of one board with these metrics in this order."""

    canonical: re.Pattern[bytes]  # groups: seq, uptime, the metrics member's body
    general: re.Pattern[bytes]  # groups: seq, uptime, then each value
    keys: tuple[bytes, ...]  # b'"name":' of each metric
    head: bytes  # the telemetry up to its seq


def _shape(device: str, boot: str, names: tuple[str, ...]) -> _Shape:
    line = b'\\{"type":"reading","device":"%s","boot":"%s","seq":%s,"uptime_ms":%s,' % (
        re.escape(device.encode()),
        re.escape(boot.encode()),
        _COUNT,
        _COUNT,
    )
    keys = tuple(b'"%s":' % name.encode() for name in names)
    canonical = b"(" + b",".join(key + _CANONICAL for key in keys) + b")"
    general = b",".join(key + b"(" + _NUMBER + b")" for key in keys)
    end = rb"\}\}\r?"  # a trailing \r is JSON whitespace; the parser allows it
    return _Shape(
        re.compile(line + rb'"metrics":\{' + canonical + end),
        re.compile(line + rb'"metrics":\{' + general + end),
        keys,
        b'{"device":"%s","boot":"%s","seq":' % (device.encode(), boot.encode()),
    )


class FastReadings:
    def __init__(self) -> None:
        self.device: str | None = None
        self.boot: str | None = None
        self._shape: _Shape | None = None
        self._shapes: dict[tuple[str, ...], _Shape] = {}

    def learn(self, reading: wire.Reading) -> None:
        """A reading the full parser accepted: lines of its shape may take the fast path."""
        if (reading.device, reading.boot) != (self.device, self.boot):
            self.forget()
            self.device, self.boot = reading.device, reading.boot
        names = tuple(reading.metrics)
        shape = self._shapes.get(names)
        if shape is None:
            if len(self._shapes) >= SHAPES_MAX:
                self._shapes.clear()
            shape = self._shapes[names] = _shape(reading.device, reading.boot, names)
        self._shape = shape

    def forget(self) -> None:
        self.device = self.boot = None
        self._shape = None
        self._shapes.clear()

    def telemetry(self, raw: bytes, ts: float) -> tuple[int, bytes] | None:
        """(seq, telemetry payload) of a reading like the last one learned, or None."""
        shape = self._shape
        if shape is None or len(raw) > wire.MAX_LINE_BYTES:
            return None
        match = shape.canonical.fullmatch(raw)
        if match is not None:
            metrics = match[3]
        else:
            match = shape.general.fullmatch(raw)
            if match is None:
                return None
            values = zip(shape.keys, match.groups()[2:], strict=True)
            metrics = b",".join([key + repr(float(text)).encode() for key, text in values])
        seq = match[1]
        # What Telemetry.to_json writes, byte for byte: names and ids need no escaping
        # (the full parser checked them), ints are their digits, floats their repr.
        payload = b'%s%s,"ts":%r,"uptime_ms":%s,"metrics":{%s}}' % (
            shape.head,
            seq,
            round(ts, 3),
            match[2],
            metrics,
        )
        return int(seq), payload
