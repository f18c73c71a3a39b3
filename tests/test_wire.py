"""The host's line parser against the shared vectors, and the pure pieces around it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from iotpipe.bridge.lines import LineSplitter, TooLong

from iotpipe import topics, wire
from tests.conftest import VECTORS

VECTOR_DATA: dict[str, Any] = json.loads(VECTORS.read_text())


def _raw(vector: dict[str, Any]) -> bytes:
    return bytes.fromhex(vector["line_hex"]) if "line_hex" in vector else vector["line"].encode()


@pytest.mark.parametrize("vector", VECTOR_DATA["encode"], ids=lambda v: v["name"])
def test_every_line_the_firmware_writes_parses_to_the_values_it_meant(
    vector: dict[str, Any],
) -> None:
    line = wire.parse_line(vector["line"].encode())
    kind = {"error": "sensorerror"}.get(vector["kind"], vector["kind"])
    assert type(line).__name__.lower() == kind
    for name, value in vector["expect"].items():
        assert getattr(line, name) == value, name
    if "device" in vector:
        assert (line.device, line.boot) == (vector["device"], vector["boot"])  # type: ignore[union-attr]


@pytest.mark.parametrize("vector", VECTOR_DATA["invalid"], ids=lambda v: v["name"])
def test_invalid_lines_are_rejected_with_their_reason(vector: dict[str, Any]) -> None:
    with pytest.raises(wire.LineRejected) as caught:
        wire.parse_line(_raw(vector))
    assert caught.value.reason == vector["reason"]
    assert caught.value.detail  # a person can read what was wrong


def test_a_trailing_carriage_return_is_accepted() -> None:
    line = VECTOR_DATA["encode"][0]["line"].encode() + b"\r"
    assert isinstance(wire.parse_line(line), wire.Reading)


def test_commands_encode_to_what_the_firmware_decodes() -> None:
    assert wire.encode_command("7", "ping") == b'{"id":"7","cmd":"ping"}\n'
    assert wire.encode_command("a-1", "set", {"interval_ms": 500}) == (
        VECTOR_DATA["commands"][1]["line"].encode() + b"\n"
    )
    with pytest.raises(ValueError, match="command id"):
        wire.encode_command("a/b", "ping")


def test_splitter_joins_lines_split_across_reads() -> None:
    splitter = LineSplitter(limit=32)
    assert list(splitter.feed(b'{"a":')) == []
    assert list(splitter.feed(b'1}\n{"b":2}\n{"c"')) == [b'{"a":1}', b'{"b":2}']
    assert list(splitter.feed(b":3}\n")) == [b'{"c":3}']


def test_splitter_cuts_an_overlong_line_and_keeps_the_next_one() -> None:
    splitter = LineSplitter(limit=16)
    out = list(splitter.feed(b"x" * 40)) + list(splitter.feed(b"y" * 40 + b"\nok\n"))
    assert isinstance(out[0], TooLong) and out[0].startswith(b"xxxx")
    assert out[1:] == [b"ok"]


def test_splitter_skips_blank_lines() -> None:
    assert list(LineSplitter().feed(b"\n\r\n  \nA\n")) == [b"A"]


def test_telemetry_round_trips_and_rejects_bad_payloads() -> None:
    sent = topics.Telemetry("dev-1", "0a1b2c3d", 5, 1700000000.5, 1234, {"t": 21.5})
    assert topics.parse_telemetry(sent.to_json()) == sent
    for bad, reason in [
        (b"not json", "not_json"),
        (b"[]", "not_object"),
        (
            b'{"device":"d","boot":"0a1b2c3d","seq":1,"ts":1,"uptime_ms":1,"metrics":{"t":NaN}}',
            "not_finite",
        ),
        (
            b'{"device":"d/#","boot":"0a1b2c3d","seq":1,"ts":1,"uptime_ms":1,"metrics":{"t":1}}',
            "bad_field",
        ),
        (b"x" * 5000, "too_long"),
    ]:
        with pytest.raises(topics.PayloadRejected) as caught:
            topics.parse_telemetry(bad)
        assert caught.value.reason == reason, bad[:40]


def test_topics_are_built_and_split_the_same_way() -> None:
    name = topics.topic("home/iot", "dev-1", "telemetry")
    assert name == "home/iot/dev-1/telemetry"
    assert topics.split("home/iot", name) == ("dev-1", "telemetry")
    with pytest.raises(topics.PayloadRejected):
        topics.split("home/iot", "home/iot/dev-1/extra/telemetry")
    with pytest.raises(ValueError):
        topics.topic("iotpipe", "a+b", "telemetry")
    with pytest.raises(ValueError):
        topics.check_base("iotpipe/#")
