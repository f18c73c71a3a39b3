"""The telemetry fast path answers as the full parser does, or leaves the payload to it."""

from __future__ import annotations

import random

import pytest

from iotpipe import topics
from iotpipe.dashboard import fasttelemetry

INVALID = [
    b"not json",
    b"[]",
    b'{"device":"d","boot":"0a1b2c3d","seq":1,"ts":1,"uptime_ms":1,"metrics":{"t":NaN}}',
    b'{"device":"d/#","boot":"0a1b2c3d","seq":1,"ts":1,"uptime_ms":1,"metrics":{"t":1}}',
    b"x" * 5000,
    b'{"device":"d","boot":"0a1b2c3d","seq":-1,"ts":1,"uptime_ms":1,"metrics":{"t":1}}',
    b'{"device":"d","boot":"0A1B2C3D","seq":1,"ts":1,"uptime_ms":1,"metrics":{"t":1}}',
    b'{"device":"d","boot":"0a1b2c3d","seq":1,"ts":1,"uptime_ms":1,"metrics":{}}',
    b'{"device":"d","boot":"0a1b2c3d","seq":1,"ts":1,"uptime_ms":1,"metrics":{"T":1}}',
    b'{"device":"d","boot":"0a1b2c3d","seq":1,"ts":1e999,"uptime_ms":1,"metrics":{"t":1}}',
    b'{"device":"d","boot":"0a1b2c3d","seq":1,"ts":1,"uptime_ms":1,"metrics":{"t":true}}',
    b'{"device":"d","boot":"0a1b2c3d","seq":1.0,"ts":1,"uptime_ms":1,"metrics":{"t":1}}',
    b'{"device":"d","boot":"0a1b2c3d","seq":01,"ts":1,"uptime_ms":1,"metrics":{"t":1}}',
    b'{"device":"d","boot":"0a1b2c3d","seq":1,"ts":1,"uptime_ms":1,"metrics":{"t":1}}x',
    b'{"device":"d","boot":"0a1b2c3d","seq":1,"ts":1,"uptime_ms":1,"metrics":{"t":1,}}',
    b'{"device":"d","boot":"0a1b2c3d","seq":1,"ts":"1","uptime_ms":1,"metrics":{"t":1}}',
    b'{"device":"d","boot":"0a1b2c3d","seq":1,"ts":1,"uptime_ms":1,"metrics":{"t":1.}}',
    b"{" + b",".join(b'"m%d":1' % i for i in range(33)) + b"}",
    b'{"device":"d","boot":"0a1b2c3d","seq":1,"ts":1,"uptime_ms":1,"metrics":{'
    + b",".join(b'"m%d":1' % i for i in range(33))
    + b"}}",
]


@pytest.mark.parametrize("payload", INVALID, ids=lambda p: p[:60].decode(errors="replace"))
def test_every_invalid_payload_is_left_to_the_full_parser(payload: bytes) -> None:
    with pytest.raises(topics.PayloadRejected):
        topics.parse_telemetry(payload)
    assert fasttelemetry.parse(payload) is None


def test_the_bridges_own_payloads_take_the_fast_path_with_the_same_values() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        sent = topics.Telemetry(
            rng.choice(["dev-1", "a", "Greenhouse_2.north", "x" * 64]),
            f"{rng.getrandbits(32):08x}",
            rng.choice([0, rng.getrandbits(40)]),
            round(rng.uniform(0, 2e9), rng.choice([0, 3])),
            rng.getrandbits(rng.choice([1, 31, 60])),
            {
                f"m_{i}": rng.choice([0.0, -0.5, 21.5, round(rng.uniform(-1e6, 1e6), 2)])
                for i in range(rng.randint(1, 32))
            },
        )
        payload = sent.to_json()
        assert fasttelemetry.parse(payload) == topics.parse_telemetry(payload) == sent


def test_edge_numbers_match_what_json_makes_of_them() -> None:
    for number in (b"0", b"-0.0", b"0.25", b"-7", b"1700000000", b"12345678901234567.5"):
        payload = (
            b'{"device":"d","boot":"0a1b2c3d","seq":0,"ts":%s,"uptime_ms":0,'
            b'"metrics":{"t":%s,"t":%s,"u":1}}' % (number, b"1", number)
        )
        full = topics.parse_telemetry(payload)
        fast = fasttelemetry.parse(payload)
        assert fast is None or (fast == full and repr(fast) == repr(full)), number
    assert fasttelemetry.parse(payload.replace(b"12345678901234567.5", b"1")) is not None


def test_mangled_payloads_are_never_accepted_differently() -> None:
    """Random damage to a good payload: the fast path either agrees or steps aside."""
    rng = random.Random(7)
    good = topics.Telemetry("dev-1", "0a1b2c3d", 12, 1700000000.25, 99, {"t": 21.5, "h": 40.0})
    base = good.to_json()
    alphabet = b'0123456789-.,:{}"eE+ aAtx\\'
    for _ in range(20000):
        raw = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(raw))
            action = rng.randrange(3)
            if action == 0:
                raw[at] = rng.choice(alphabet)
            elif action == 1:
                del raw[at]
            else:
                raw.insert(at, rng.choice(alphabet))
        payload = bytes(raw)
        fast = fasttelemetry.parse(payload)
        if fast is not None:
            assert fast == topics.parse_telemetry(payload), payload
            assert repr(fast) == repr(topics.parse_telemetry(payload)), payload
