"""The bridge's fast path for a board's next reading is held to the full parser: the
shared vectors, and lines generated around the shape a board writes (numbers in every
JSON spelling, members reordered, repeated or missing, whitespace, other ids)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotpipe import wire
from iotpipe.bridge.fastpath import FastReadings
from iotpipe.bridge.translate import Translator
from tests.conftest import VECTORS

VECTOR_DATA = json.loads(VECTORS.read_text())
DEVICE, BOOT, NAMES = "esp32-a1.b_2", "0a1b2c3d", ("temperature", "humidity", "count")
TS = 1763700000.12345


def _raw(vector: dict[str, Any]) -> bytes:
    return bytes.fromhex(vector["line_hex"]) if "line_hex" in vector else vector["line"].encode()


def _taught(raw: bytes) -> FastReadings:
    """A fast path that learned the most it could from a valid line of the same board:
    its device, boot and the valid metric names of this line, in this line's order."""
    try:
        obj = json.loads(raw)
    except ValueError:
        obj = {}
    obj = obj if isinstance(obj, dict) else {}
    device, boot, metrics = obj.get("device"), obj.get("boot"), obj.get("metrics")
    ok = isinstance(device, str) and wire.DEVICE_ID_RE.fullmatch(device)
    device = device if ok else "dev"
    ok = isinstance(boot, str) and wire.BOOT_ID_RE.fullmatch(boot)
    boot = boot if ok else "0a1b2c3d"
    names = metrics if isinstance(metrics, dict) else {}
    valid = [n for n in names if isinstance(n, str) and wire.METRIC_RE.fullmatch(n)]
    fast = FastReadings()
    fast.learn(wire.Reading(device, boot, 0, 0, dict.fromkeys(valid or ["t"], 0.0)))
    return fast


def _expected(raw: bytes, ts: float) -> tuple[int, bytes] | None:
    """What the full parser makes of the line, as the fast path would say it."""
    try:
        line = wire.parse_line(raw)
    except (wire.LineRejected, ValueError, OverflowError):
        return None
    if not isinstance(line, wire.Reading):
        return None
    return line.seq, Translator("iotpipe").message(line, line.device, ts).payload


@pytest.mark.parametrize("vector", VECTOR_DATA["invalid"], ids=lambda v: v["name"])
def test_the_fast_path_never_accepts_what_the_parser_rejects(vector: dict[str, Any]) -> None:
    raw = _raw(vector)
    assert _taught(raw).telemetry(raw.rstrip(b"\r"), 1.0) is None


@pytest.mark.parametrize(
    "vector",
    [v for v in VECTOR_DATA["encode"] if v["kind"] == "reading"],
    ids=lambda v: v["name"],
)
def test_the_fast_path_gives_the_same_telemetry_as_the_parser(vector: dict[str, Any]) -> None:
    raw = vector["line"].encode()
    assert _taught(raw).telemetry(raw, TS) == _expected(raw, TS)
    assert _taught(raw).telemetry(raw + b"\r", TS) == _expected(raw, TS)


# Numbers as a board writes them and as JSON allows them to be written otherwise.
_DIGITS = st.text("0123456789", min_size=1, max_size=18)
_NUMBERS = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.tuples(st.integers(-(10**9), 10**9), st.integers(0, 6)).map(
        lambda q: (
            f"{'-' if q[0] < 0 else ''}%d.%0{q[1]}d" % divmod(abs(q[0]), 10 ** q[1])
            if q[1]
            else str(q[0])
        )
    ),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.tuples(st.sampled_from(["", "-"]), _DIGITS, _DIGITS).map(lambda t: f"{t[0]}{t[1]}.{t[2]}"),
    st.sampled_from(
        [
            *("-0", "-0.0", "0.0", "1e5", "1E-3", "2.5e+2", "1e999", "-1e999", "01", "1."),
            *(".5", "+1", "0.00001", "0.0001", "123456789012345678", "1" * 40, "NaN", "true"),
            *('"21.5"', "null"),
        ]
    ),
)


@st.composite
def _lines(draw: st.DrawFn) -> bytes:
    """A reading close to the board's shape, sometimes bent out of it."""
    names = list(draw(st.permutations(NAMES)) if draw(st.booleans()) else NAMES)
    names = names[: draw(st.integers(1, len(names)))] if draw(st.booleans()) else names
    if draw(st.integers(0, 9)) == 0:
        names.append(draw(st.sampled_from([*NAMES, "other", "Bad name"])))
    metrics = ",".join(f'"{name}":{draw(_NUMBERS)}' for name in names)
    members = {
        "type": '"reading"',
        "device": json.dumps(draw(st.sampled_from([DEVICE, DEVICE, "esp32-a1xb_2", "x"]))),
        "boot": json.dumps(draw(st.sampled_from([BOOT, BOOT, "0a1b2c3e"]))),
        "seq": draw(st.one_of(st.integers(-2, 10**20).map(str), st.sampled_from(["01", '"7"']))),
        "uptime_ms": draw(st.integers(-1, 10**12).map(str)),
        "metrics": "{" + metrics + "}",
    }
    order = list(members)
    if draw(st.integers(0, 9)) == 0:
        order = draw(st.permutations(order))
    colon = draw(st.sampled_from([":", ":", ": "]))
    line = "{" + ",".join(f'"{key}"{colon}{members[key]}' for key in order) + "}"
    return (line + draw(st.sampled_from(["", "", "\r", " "]))).encode()


def _board_fast_path() -> FastReadings:
    fast = FastReadings()
    fast.learn(wire.Reading(DEVICE, BOOT, 0, 0, dict.fromkeys(NAMES, 0.0)))
    return fast


@settings(max_examples=3000, deadline=None)
@given(_lines())
def test_whatever_the_fast_path_takes_the_parser_takes_the_same_way(raw: bytes) -> None:
    got = _board_fast_path().telemetry(raw, TS)
    if got is not None:
        assert got == _expected(raw, TS)


@settings(max_examples=500, deadline=None)
@given(
    st.integers(0, 2**31),
    st.integers(0, 2**31),
    st.lists(st.tuples(st.integers(-(2**31), 2**31), st.integers(0, 6)), min_size=3, max_size=3),
)
def test_the_lines_a_board_writes_take_the_fast_path(
    seq: int, uptime: int, values: list[tuple[int, int]]
) -> None:
    """In units of their last decimal, as firmware/wire.py writes them: fast, and right."""
    texts = [
        (f"{'-' if q < 0 else ''}%d.%0{d}d" % divmod(abs(q), 10**d)) if d else str(q)
        for q, d in values
    ]
    metrics = ",".join(f'"{name}":{text}' for name, text in zip(NAMES, texts, strict=True))
    raw = (
        f'{{"type":"reading","device":"{DEVICE}","boot":"{BOOT}","seq":{seq},'
        f'"uptime_ms":{uptime},"metrics":{{{metrics}}}}}'
    ).encode()
    got = _board_fast_path().telemetry(raw, TS)
    assert got is not None and got == _expected(raw, TS)


def test_a_sensor_that_fails_and_returns_is_a_shape_learned_again() -> None:
    fast = _board_fast_path()
    fewer = f'{{"type":"reading","device":"{DEVICE}","boot":"{BOOT}","seq":1,"uptime_ms":1,'
    fewer += '"metrics":{"temperature":21.5}}'
    assert fast.telemetry(fewer.encode(), TS) is None  # not the shape learned: the parser
    reading = wire.parse_line(fewer.encode())
    assert isinstance(reading, wire.Reading)
    fast.learn(reading)
    assert fast.telemetry(fewer.encode(), TS) == _expected(fewer.encode(), TS)
    fast.forget()
    assert fast.telemetry(fewer.encode(), TS) is None
