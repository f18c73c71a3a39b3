"""The host's line parser against the shared vectors, and the pure pieces around it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from iotpipe import topics, wire
from iotpipe.bridge.lines import LineSplitter, TooLong
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


@pytest.mark.parametrize("vector", VECTOR_DATA["accepted"], ids=lambda v: v["name"])
def test_lines_of_older_firmware_are_still_accepted(vector: dict[str, Any]) -> None:
    line = wire.parse_line(vector["line"].encode())
    for name, value in vector["expect"].items():
        assert getattr(line, name) == value, name


def test_an_info_answer_states_decimals_as_the_hello_does() -> None:
    (hello,) = [v for v in VECTOR_DATA["encode"] if v["name"] == "hello at boot"]
    info = {**json.loads(hello["line"]), "wdt_ms": 8000, "mem_free": 1000, "seq": 3}
    assert wire.hello_from_info(info).decimals == hello["expect"]["decimals"]
    del info["decimals"]
    assert wire.hello_from_info(info).decimals == {}
    with pytest.raises(wire.LineRejected) as caught:
        wire.hello_from_info({**info, "decimals": {"temperature": -2}})
    assert caught.value.reason == "bad_decimals"


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


REPLAY: dict[str, Any] = VECTOR_DATA["replay"]


@pytest.mark.parametrize("case", REPLAY["cases"], ids=lambda c: c["name"])
def test_a_replay_answer_parses_to_what_the_board_meant(case: dict[str, Any]) -> None:
    answer = wire.parse_line(case["answer"].encode())
    assert isinstance(answer, wire.Answer) and answer.id == case["id"]
    assert wire.replayed_from_answer(answer) == wire.Replayed(**case["expect"])


@pytest.mark.parametrize("case", REPLAY["cases"], ids=lambda c: c["name"])
def test_replayed_lines_are_the_readings_first_written_value_by_value(
    case: dict[str, Any],
) -> None:
    written = {
        seq: dict(zip([m[0] for m in REPLAY["metrics"]], values, strict=True))
        for seq, _, values in REPLAY["readings"]
    }
    for raw in case["lines"]:
        line = wire.parse_line(raw.encode())
        assert isinstance(line, wire.Reading) and line.boot == REPLAY["boot"]
        meant = {k: v for k, v in written[line.seq].items() if v is not None}
        assert line.metrics.keys() == meant.keys()
        for name, decimals in [(m[0], m[2]) for m in REPLAY["metrics"] if m[0] in meant]:
            assert line.metrics[name] == round(meant[name], decimals), (line.seq, name)


def test_the_replay_command_is_built_as_the_vectors_say() -> None:
    for case in REPLAY["cases"]:
        args = case["args"]
        if "boot" in args:
            built = wire.encode_replay(case["id"], args["boot"], args["after"])
            assert built == case["command"].encode() + b"\n"
    assert wire.encode_replay("r2", None, -1) == b'{"id":"r2","cmd":"replay","args":{"after":-1}}\n'
    for bad_after in (-2, True, 1.5):
        with pytest.raises(ValueError, match="after"):
            wire.encode_replay("r3", "0a1b2c3d", bad_after)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="boot"):
        wire.encode_replay("r3", "BOOT", 1)


def test_a_replay_answer_that_is_not_one_is_rejected_with_the_reason() -> None:
    failed = wire.Answer("r1", False, error="a replay is running; ask again after its answer")
    with pytest.raises(wire.LineRejected, match="a replay is running"):
        wire.replayed_from_answer(failed)
    for result in (
        {"boot": "0a1b2c3d", "sent": -1, "first": None, "missing": 0},
        {"boot": "0a1b2c3d", "sent": 1, "first": "6", "missing": 0},
        {"boot": "zz", "sent": 1, "first": 6, "missing": 0},
        {"boot": "0a1b2c3d", "sent": 1, "first": 6},
    ):
        with pytest.raises(wire.LineRejected):
            wire.replayed_from_answer(wire.Answer("r1", True, result=result))
