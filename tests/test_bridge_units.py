"""The bridge's pure parts and its spool, without processes: fast, exact."""

from __future__ import annotations

import argparse
import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from iotpipe import settings, wire
from iotpipe.bridge import names, ports
from iotpipe.bridge.outbox import KEEP_ACKED_S, Outbox
from iotpipe.bridge.requests import (
    Request,
    Route,
    Router,
    parse_request,
    route_for,
)
from iotpipe.bridge.spool import Spool
from iotpipe.bridge.storage import Storage
from iotpipe.bridge.translate import Translator
from iotpipe.counters import Counters
from iotpipe.mqttwire import discovery
from iotpipe.mqttwire.request import RequestRejected
from iotpipe.settings import add_settings


@dataclass
class FakePort:
    device: str
    vid: int | None = None
    serial_number: str | None = None


PLUGGED = [
    FakePort("/dev/ttyS0"),
    FakePort("/dev/ttyUSB1", 0x10C4, "0001"),
    FakePort("/dev/ttyACM0", 0x2E8A, "E66038B7133A2D2F"),
]


def test_serial_number_finds_the_board_wherever_it_enumerated() -> None:
    moved = [FakePort("/dev/ttyACM3", 0x2E8A, "E66038B7133A2D2F")]
    assert ports.resolve("E66038B7133A2D2F", lambda: PLUGGED) == "/dev/ttyACM0"
    assert ports.resolve("E66038B7133A2D2F", lambda: moved) == "/dev/ttyACM3"


def test_paths_and_urls_are_used_as_given_and_absent_boards_are_reported() -> None:
    for spec in ("/dev/serial/by-id/usb-x", "socket://127.0.0.1:7000", "rfc2217://h:1"):
        assert ports.resolve(spec, lambda: []) == spec
    with pytest.raises(ports.PortNotFound, match="serial number"):
        ports.resolve("nope", lambda: PLUGGED)


def test_auto_expands_to_every_board_by_serial_number_without_repeating_a_named_one() -> None:
    plugged = [*PLUGGED, FakePort("/dev/ttyACM1", 0x303A, None)]
    assert ports.expand(["auto"], lambda: plugged) == ["E66038B7133A2D2F", "/dev/ttyACM1", "0001"]
    named = ["/dev/ttyUSB1", "auto", "E66038B7133A2D2F"]
    assert ports.expand(named, lambda: plugged) == [*named[::2], "/dev/ttyACM1"]
    assert ports.expand(["/dev/ttyS0", "/dev/ttyS0"], lambda: plugged) == ["/dev/ttyS0"]
    assert ports.expand(["auto"], lambda: [FakePort("/dev/ttyS0")]) == []  # not a board


def test_the_first_board_auto_finds_takes_over_the_spool_auto_had(tmp_path: Path) -> None:
    legacy = tmp_path / names.port_name("auto")
    legacy.mkdir()
    (legacy / "spool.sqlite").write_bytes(b"readings")
    first = names.spool_for(tmp_path, "E66038B7133A2D2F", found_by_auto=True)
    assert (first / "spool.sqlite").read_bytes() == b"readings"
    assert not legacy.exists()
    second = names.spool_for(tmp_path, "0001", found_by_auto=True)
    assert second == tmp_path / names.port_name("0001") and not second.exists()
    # A port named on the command line keeps the name one bridge per port gave it.
    assert names.spool_for(tmp_path, "/dev/ttyUSB1", False).name == names.port_name("/dev/ttyUSB1")


def test_serial_may_be_repeated_or_comma_separated_and_a_flag_overrides_the_environment(
    isolated_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def parse(*argv: str) -> list[str]:
        parser = argparse.ArgumentParser(prog="iotpipe bridge")
        add_settings(parser, "serial")
        found: list[str] = parser.parse_args(argv).serial
        return found

    monkeypatch.setenv("IOTPIPE_SERIAL", "/dev/ttyACM0, /dev/ttyACM1")
    assert parse() == ["/dev/ttyACM0", "/dev/ttyACM1"]
    assert parse("--serial", "auto") == ["auto"]
    assert parse("--serial", "/dev/a", "--serial", "/dev/b,/dev/c") == [
        "/dev/a",
        "/dev/b",
        "/dev/c",
    ]


def test_spool_keeps_rows_across_reopening_and_never_reuses_an_id(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10**6)
    spool.append([("t", b"a"), ("t", b"b")])
    spool.delete([1, 2])
    spool.append([("t", b"c")])
    assert [r[0] for r in spool.after(0, 10)] == [3]
    spool.remember("device", "d1")
    spool.close()
    again = Spool(tmp_path, 10**6)
    assert again.after(0, 10) == [(3, "t", b"c")] and again.rows == 1
    assert again.recall("device") == "d1"


def test_a_full_spool_drops_the_oldest_rows_and_says_how_many(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1000)
    dropped = spool.append([("t", b"x" * 100) for _ in range(20)])
    assert dropped.rows > 0 and spool.size <= 1000
    kept = spool.after(0, 100)
    assert kept[-1][0] == 20 and len(kept) == 20 - dropped.rows


class Transport:
    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes]] = []

    def send(self, topic: str, payload: bytes) -> int | None:
        self.sent.append((len(self.sent) + 1, payload))
        return len(self.sent)


def _outbox(tmp_path: Path, rate: float = 1e9, keep: float = 0) -> tuple[Outbox, Transport]:
    transport = Transport()
    counters = Counters("t")
    storage = Storage(tmp_path, 10**7, counters)
    return Outbox(storage, transport.send, counters, rate, keep_acked_s=keep), transport


def test_outbox_deletes_a_reading_only_when_acknowledged(tmp_path: Path) -> None:
    outbox, transport = _outbox(tmp_path)
    outbox.connected()
    outbox.put([("t", b"1"), ("t", b"2")])
    outbox.step()
    assert [p for _, p in transport.sent] == [b"1", b"2"]
    outbox.acked(1)
    outbox.step()
    assert outbox.spool is not None
    assert [r[2] for r in outbox.spool.after(0, 10)] == [b"2"]


def test_after_a_reconnect_every_unacknowledged_reading_is_sent_again_in_order(
    tmp_path: Path,
) -> None:
    outbox, transport = _outbox(tmp_path)  # acknowledged rows are not kept
    outbox.connected()
    outbox.put([("t", b"1"), ("t", b"2"), ("t", b"3")])
    outbox.step()
    outbox.acked(1)
    outbox.disconnected()
    outbox.put([("t", b"4")])  # while the broker is away: spooled, not sent
    outbox.step()
    assert len(transport.sent) == 3
    outbox.connected()
    outbox.step()
    assert [p for _, p in transport.sent[3:]] == [b"2", b"3", b"4"]


def test_acknowledged_readings_are_kept_a_while_and_sent_again_after_a_reconnect(
    tmp_path: Path,
) -> None:
    # A broker killed before it saved loses what it acknowledged but had not delivered.
    outbox, transport = _outbox(tmp_path, keep=3600)
    outbox.connected()
    outbox.put([("t", b"1"), ("t", b"2")])
    outbox.step()
    outbox.acked(1)
    outbox.acked(2)
    outbox.step()
    assert outbox.backlog == 0 and outbox.spool is not None and outbox.spool.rows == 2
    outbox.disconnected()
    outbox.connected()
    outbox.step()
    assert [p for _, p in transport.sent] == [b"1", b"2", b"1", b"2"]


def test_acknowledged_rows_outlive_two_of_the_brokers_saves() -> None:
    # What a broker acknowledged since its last save is resent from the kept rows only if
    # they are kept longer than the time between saves, also when a save comes late.
    conf = (
        Path(__file__).parent.parent / "iotpipe" / "broker" / "conf.d" / "iotpipe.conf"
    ).read_text()
    found = re.search(r"^autosave_interval (\d+)$", conf, re.MULTILINE)
    assert found, "iotpipe/broker/conf.d/iotpipe.conf sets no autosave_interval"
    assert settings.SETTINGS["keep-acked"].default == KEEP_ACKED_S >= 2 * int(found[1])


def test_a_full_spool_deletes_kept_copies_before_dropping_an_unsent_reading(
    tmp_path: Path,
) -> None:
    counters = Counters("t")
    storage = Storage(tmp_path, 3000, counters)
    transport = Transport()
    gaps: list[object] = []
    outbox = Outbox(storage, transport.send, counters, 1e9, on_dropped=gaps.extend)
    outbox.connected()
    outbox.put([("t", b"k" * 100) for _ in range(20)])  # about 2,800 bytes with the rows
    outbox.step()
    for mid in range(1, 21):
        outbox.acked(mid)
    outbox.step()  # all acknowledged, kept for a reconnect
    assert outbox.spool is not None and outbox.spool.rows == 20
    outbox.put([("t", b"n" * 100) for _ in range(5)])
    assert counters.get("dropped", "spool_full") == 0 and gaps == []
    assert [r[2] for r in outbox.spool.after(0, 100)] == [b"n" * 100] * 5


def test_backlog_is_drained_at_the_configured_rate(tmp_path: Path) -> None:
    outbox, transport = _outbox(tmp_path, rate=100)
    outbox.put([("t", b"%d" % i) for i in range(1000)])
    outbox.connected()
    outbox.step()
    assert len(transport.sent) <= 5  # a burst of a few ticks' worth, not the whole backlog


def _request(client_id: str | int, route: str = "r") -> Request:
    return Request(client_id, "ping", None, Route(route, b"c-%s" % str(client_id).encode()))


def test_two_clients_with_the_same_id_each_get_their_own_answer() -> None:
    router = Router(timeout=5, max_on_board=10)
    first = router.submit(_request(1, "a"), now=0).write[0]
    second = router.submit(_request(1, "b"), now=0).write[0]
    ids = [json.loads(line)["id"] for line in (first, second)]
    assert ids[0] != ids[1]
    reply, _ = router.answered(wire.Answer(ids[1], True, result={"uptime_ms": 5}))
    assert reply is not None and reply.route == Route("b", b"c-1")
    assert json.loads(reply.payload) == {"id": 1, "ok": True, "result": {"uptime_ms": 5}}


def test_requests_wait_their_turn_and_late_ones_get_a_timeout_answer() -> None:
    router = Router(timeout=2, max_on_board=1)
    assert len(router.submit(_request("x"), now=0).write) == 1
    assert router.submit(_request("y"), now=1).write == []  # waits for x
    expired = router.expire(now=2.5)
    assert [json.loads(r.payload)["id"] for r in expired.replies] == ["x"]
    assert "timeout" in json.loads(expired.replies[0].payload)["error"]
    assert len(expired.write) == 1  # y goes to the board now


def test_a_request_that_is_not_json_is_refused_with_a_reason() -> None:
    route = Route("r")
    for payload, reason in [
        (b"{nope", "not_json"),
        (b"[1]", "not_object"),
        (b'{"cmd":"ping"}', "bad_id"),
        (b'{"id":"1","cmd":7}', "bad_cmd"),
        (b'{"id":"1","cmd":"set","args":[1]}', "bad_args"),
    ]:
        with pytest.raises(RequestRejected) as caught:
            parse_request(payload, route)
        assert caught.value.reason == reason


def test_replies_go_to_the_response_topic_then_reply_to_then_the_default() -> None:
    body = b'{"id":"1","cmd":"ping","reply_to":"me/answers"}'
    assert route_for(body, "v5/topic", b"corr", "d") == Route("v5/topic", b"corr")
    assert route_for(body, None, None, "d") == Route("me/answers")
    assert route_for(b'{"id":"1","reply_to":"bad/#"}', None, None, "d") == Route("d")
    assert route_for(b"\xff not json", None, None, "d") == Route("d")


def test_home_assistant_discovery_describes_each_metric() -> None:
    hello = wire.Hello(
        "d1", "0a1b2c3d", 1, "0.2.0", "esp32", ["sht31"], {"temperature": "°C"}, 5000
    )
    config = discovery.configs(hello, "iotpipe", "iotpipe/bridge/b/status")[0]
    body = json.loads(config.payload)
    assert config.topic == "homeassistant/sensor/d1/temperature/config" and config.retain
    assert body["device_class"] == "temperature" and body["unit_of_measurement"] == "°C"
    assert body["state_topic"] == "iotpipe/d1/telemetry" and body["state_class"] == "measurement"
    assert {a["topic"] for a in body["availability"]} == {
        "iotpipe/d1/status",
        "iotpipe/bridge/b/status",
    }


def test_the_meta_carries_the_boards_decimals_only_when_it_states_them() -> None:
    args = ("d1", "0a1b2c3d", 1, "0.2.0", "esp32", ["dht22"], {"temperature": "°C"}, 5000)
    translator = Translator("iotpipe")
    stated = translator.message(wire.Hello(*args, {"temperature": 1}), "d1", 1.0)
    assert json.loads(stated.payload)["decimals"] == {"temperature": 1} and stated.retain
    older = json.loads(translator.message(wire.Hello(*args), "d1", 1.0).payload)
    assert "decimals" not in older  # older firmware did not say: no guess either


def test_device_parses_and_keeps_state_but_does_no_io() -> None:
    """Data flows one way (docs/architecture.md): device.py returns messages and effects as
    values; link.py alone talks MQTT and writes to the port."""
    source = (Path(__file__).resolve().parent.parent / "iotpipe/bridge/device.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    io = ("paho", "serial", "socket", "select", "sqlite3", "iotpipe.bridge.publisher")
    io += ("iotpipe.bridge.mqttio", "iotpipe.bridge.portio", "iotpipe.bridge.portretry")
    io += ("iotpipe.bridge.link", "iotpipe.bridge.outbox", "iotpipe.bridge.storage")
    found = {name for name in imported if name.split(".")[0] in io or name.startswith(io)}
    assert not found, f"device.py must not do I/O: it imports {sorted(found)}"
