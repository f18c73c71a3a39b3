"""A cheaper way through for the line a board writes most: its next reading.

Once the full parser (``iotpipe.wire``) accepted a reading from this board, its device id,
boot id and metric names are known to be valid. A later line that names exactly those
needs only the checks that can still differ: the JSON itself, the numbers' types and
finiteness. Anything else — another type, device or boot, a new metric name, a constant
like NaN, a line the fast checks are unsure of — returns None and takes the full parser,
which alone decides what is rejected and why. ``tests/test_bridge_units.py`` holds the
two to the same vectors, so this is an optimisation, never a second contract.
"""

from __future__ import annotations

import json
from typing import Any

from iotpipe import wire


class _Unsure(Exception):
    pass


def _unsure(name: str) -> Any:
    raise _Unsure


_strict_decoder = json.JSONDecoder(parse_constant=_unsure)


class FastReadings:
    def __init__(self) -> None:
        self.device: str | None = None
        self.boot: str | None = None
        self.names: frozenset[str] = frozenset()

    def learn(self, reading: wire.Reading) -> None:
        """A reading the full parser accepted: lines like it may take the fast path."""
        if (reading.device, reading.boot) != (self.device, self.boot):
            self.names = frozenset()
        self.device, self.boot = reading.device, reading.boot
        self.names = self.names | reading.metrics.keys()

    def forget(self) -> None:
        self.device = self.boot = None
        self.names = frozenset()

    def telemetry(self, raw: bytes, ts: float) -> tuple[int, bytes] | None:
        """(seq, telemetry payload) of a reading like the known ones, or None."""
        if self.device is None or len(raw) > wire.MAX_LINE_BYTES:
            return None
        try:
            obj = _strict_decoder.decode(raw.decode())
        except (_Unsure, ValueError):
            return None
        if (
            type(obj) is not dict
            or obj.get("type") != "reading"
            or obj.get("device") != self.device
            or obj.get("boot") != self.boot
        ):
            return None
        seq, uptime, metrics = obj.get("seq"), obj.get("uptime_ms"), obj.get("metrics")
        if type(seq) is not int or type(uptime) is not int or seq < 0 or uptime < 0:
            return None
        if type(metrics) is not dict or not metrics or not metrics.keys() <= self.names:
            return None
        values = []
        for name, value in metrics.items():
            kind = type(value)
            if kind is float:
                if value - value != 0:  # inf - inf and nan - nan are nan
                    return None
            elif kind is not int:
                return None
            values.append(f'"{name}":{float(value)!r}')
        # What Telemetry.to_json writes, byte for byte: the names were checked when the
        # full parser accepted them (nothing to escape) and repr is how json writes floats.
        payload = (
            f'{{"device":"{self.device}","boot":"{self.boot}","seq":{seq},'
            f'"ts":{round(ts, 3)!r},"uptime_ms":{uptime},"metrics":{{{",".join(values)}}}}}'
        )
        return seq, payload.encode()
