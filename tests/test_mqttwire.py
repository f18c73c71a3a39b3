"""The MQTT contract against the shared vectors (tests/vectors/mqtt.json): each producer
on the host builds exactly the vector's topic and payload, each parser reads the payload
(and the Wi-Fi board's own bytes of it) back to the vector's value, and rejects each
invalid payload with its reason. tests/firmware/run_mqtt_vectors.py checks the board's
half against the same file under MicroPython."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import pytest

from iotpipe import __version__, topics, wire
from iotpipe.bridge.continuity import Gap
from iotpipe.bridge.requests import Request, Route, Router, route_for
from iotpipe.bridge.translate import Translator
from iotpipe.mqttwire import alert, answer, discovery, event, meta, request
from tests.conftest import MQTT_VECTORS

V: dict[str, Any] = json.loads(MQTT_VECTORS.read_text())
BASE: str = V["base"]
T = Translator(BASE)


def _named(vectors: list[dict[str, Any]]) -> Any:
    return pytest.mark.parametrize("v", vectors, ids=lambda v: v["name"])


def _raw(v: dict[str, Any]) -> bytes:
    return bytes.fromhex(v["payload_hex"]) if "payload_hex" in v else v["payload"].encode()


def _check(message: topics.Message, v: dict[str, Any]) -> None:
    assert (message.topic, message.payload.decode()) == (v["topic"], v["payload"])
    assert message.retain == v["retain"] and message.qos == 1


def _payloads(v: dict[str, Any]) -> list[bytes]:
    """The host's bytes, and the board's when they differ (both mean the same)."""
    return [v[k].encode() for k in ("payload", "board_payload") if k in v]


# --- topics ---------------------------------------------------------------------------


@pytest.mark.parametrize("v", V["topics"]["build"], ids=lambda v: v["topic"])
def test_every_topic_is_built_and_split_as_the_vectors_say(v: dict[str, Any]) -> None:
    base = v.get("base", BASE)
    if "bridge" in v:
        assert topics.bridge_status(base, v["bridge"]) == v["topic"]
    elif "dashboard" in v:
        assert topics.dashboard_reply(base, v["dashboard"]) == v["topic"]
    else:
        assert topics.topic(base, v["device"], v["kind"]) == v["topic"]
        assert topics.split(base, v["topic"]) == (v["device"], v["kind"])


def test_a_subscription_matches_every_device() -> None:
    for v in V["topics"]["subscription"]:
        assert topics.subscription(BASE, v["kind"]) == v["topic"]


@_named(V["topics"]["invalid"])
def test_a_topic_that_is_not_the_contracts_is_rejected(v: dict[str, Any]) -> None:
    with pytest.raises(topics.PayloadRejected) as caught:
        topics.split(BASE, v["topic"])
    assert caught.value.reason == v["reason"]


# --- what the bridge builds -----------------------------------------------------------


@_named(V["status"]["build"])
def test_status_is_built_and_parsed(v: dict[str, Any]) -> None:
    if "bridge" in v:
        _check(T.bridge_status(v["bridge"], v["online"]), v)
    else:
        _check(T.status(v["device"], v["online"]), v)
    assert topics.parse_status(v["payload"].encode()) is v["online"]


@_named(V["telemetry"]["build"])
def test_telemetry_is_built_from_a_reading_and_parsed_back(v: dict[str, Any]) -> None:
    value = v["value"]
    reading = wire.Reading(
        value["device"], value["boot"], value["seq"], value["uptime_ms"], value["metrics"]
    )
    _check(T.message(reading, value["device"], value["ts"]), v)
    for payload in _payloads(v):
        assert topics.parse_telemetry(payload) == topics.Telemetry(**value)


@_named(V["meta"]["build"])
def test_meta_is_built_from_a_hello_and_parsed_back(v: dict[str, Any]) -> None:
    if "hello" in v:  # else only a board publishes it
        hello = wire.Hello(**v["hello"])
        _check(T.message(hello, hello.device, v["ts"]), v)
    for payload in _payloads(v):
        assert asdict(meta.parse_meta(payload)) == v["value"]


@_named(V["meta"]["parse"])
def test_a_meta_with_members_left_out_takes_their_empty_values(v: dict[str, Any]) -> None:
    assert asdict(meta.parse_meta(_raw(v))) == v["value"]


def _line(v: dict[str, Any]) -> wire.Event | wire.SensorError:
    value = v["value"]
    origin = (value["device"], value["boot"], value["uptime_ms"])
    if value["event"] == event.SENSOR_ERROR:
        return wire.SensorError(*origin, value["data"]["sensor"], value["data"]["reason"])
    return wire.Event(*origin, value["event"], value["data"])


@_named(V["event"]["build"])
def test_events_and_gap_reports_are_built_and_parsed_back(v: dict[str, Any]) -> None:
    if "gap" in v:
        _check(T.gap(Gap(**v["gap"]), v["now_boot"], v["ts"]), v)
        parsed = event.parse_event(v["payload"].encode())
        assert asdict(parsed) == v["value"]
        assert asdict(event.gap_of(parsed, v["gap"]["device"]) or {}) == v["gap_value"]
        return
    _check(T.message(_line(v), v["value"]["device"], v["value"]["ts"]), v)
    for payload in _payloads(v):
        parsed = event.parse_event(payload)
        assert asdict(parsed) == v["value"]
        assert event.gap_of(parsed, "kitchen") is None


@_named(V["answer"]["build"])
def test_answers_are_built_alike_for_a_board_line_and_a_refusal(v: dict[str, Any]) -> None:
    value = v["result"] if v["ok"] else v["error"]
    assert answer.encode_answer(v["id"], v["ok"], value).decode() == v["payload"]
    if v["id"] is None or isinstance(v["id"], str):  # a board's answer line: its own id
        line = wire.Answer(v["id"], v["ok"], v.get("result"), v.get("error"))
        message = T.message(line, "kitchen", 0.0)
        assert (message.topic, message.payload.decode()) == ("iotpipe/kitchen/reply", v["payload"])
    for payload in _payloads(v):
        parsed = answer.parse_answer(payload)
        assert (parsed.id, parsed.ok) == (v["id"], v["ok"])
        assert (parsed.result if v["ok"] else parsed.error) == value


def test_the_routers_answer_to_the_asker_is_the_contracts() -> None:
    router = Router(timeout=5)
    (v,) = [v for v in V["answer"]["build"] if v["name"] == "a result"]
    asked = request.parse_request(b'{"id":"42","cmd":"set"}')
    line = router.submit(Request(asked.id, asked.cmd, asked.args, Route("r")), 0).write[0]
    board_id = json.loads(line)["id"]
    reply, _ = router.answered(wire.Answer(board_id, True, result=v["result"]))
    assert reply is not None and reply.payload.decode() == v["payload"]


# --- what the dashboard builds --------------------------------------------------------


@_named(V["request"]["build"])
def test_the_dashboards_request_is_built_as_the_vectors_say(v: dict[str, Any]) -> None:
    built = request.encode_request(request.Request(**v["value"]))
    assert built.decode() == v["payload"]
    assert topics.topic(BASE, v["device"], "cmd") == v["topic"]
    assert asdict(request.parse_request(built)) == v["value"]


@_named(V["request"]["parse"])
def test_requests_of_every_asker_parse_to_their_values(v: dict[str, Any]) -> None:
    assert asdict(request.parse_request(_raw(v))) == v["value"]


@_named(V["request"]["invalid"])
def test_an_invalid_request_is_refused_with_its_reason_and_answered(v: dict[str, Any]) -> None:
    with pytest.raises(request.RequestRejected) as caught:
        request.parse_request(_raw(v))
    assert caught.value.reason == v["reason"]
    assert caught.value.client_id == v["id"]
    if not v.get("host_only"):
        assert caught.value.detail.startswith(v["error"]), caught.value.detail
    assert route_for(_raw(v), None, None, "d") == Route(v["reply_to"] or "d")


@_named(V["alert"]["build"])
def test_an_alert_is_written_as_the_dashboard_always_wrote_it(v: dict[str, Any]) -> None:
    assert alert.encode_alert(v["value"]).decode() == v["payload"]
    assert topics.topic(BASE, v["device"], "alert") == v["topic"]
    assert asdict(alert.parse_alert(v["payload"].encode())) == v["value"]


def test_an_alert_record_with_a_member_too_many_or_too_few_is_not_written() -> None:
    record = V["alert"]["build"][0]["value"]
    for wrong in ({**record, "extra": 1}, {k: x for k, x in record.items() if k != "id"}):
        with pytest.raises(ValueError, match="exactly the members"):
            alert.encode_alert(wrong)


# --- Home Assistant's wire ------------------------------------------------------------


def _board(b: dict[str, Any]) -> discovery.Board:
    return discovery.Board(**b)


@_named(V["discovery"]["build"])
def test_discovery_configs_are_the_vectors_byte_for_byte(v: dict[str, Any]) -> None:
    before = _board(v["before"]) if "before" in v else None
    built = discovery.configs(_board(v["board"]), BASE, v["bridge_status"], before=before)
    version = json.dumps(__version__)[1:-1]
    want = [
        (m["topic"], m["payload"].replace("@VERSION@", version), m["retain"]) for m in v["messages"]
    ]
    assert [(m.topic, m.payload.decode(), m.retain) for m in built] == want


@_named(V["discovery"]["from_meta"])
def test_a_retained_meta_is_announced_as_the_board_it_describes(v: dict[str, Any]) -> None:
    assert discovery.board_from_meta(_raw(v)) == _board(v["board"])


@_named(V["discovery"]["invalid_meta"])
def test_a_meta_discovery_cannot_announce_is_refused(v: dict[str, Any]) -> None:
    with pytest.raises(topics.PayloadRejected) as caught:
        discovery.board_from_meta(_raw(v))
    assert caught.value.reason == v["reason"]


@_named(V["discovery"]["owner"])
def test_an_iotpipe_config_is_told_from_anybody_elses(v: dict[str, Any]) -> None:
    payload = _raw(v).replace(b"@VERSION@", __version__.encode())
    assert discovery.config_owner(v["base"], payload) == v["device"]


# --- rejections -----------------------------------------------------------------------

PARSERS: dict[str, Callable[[bytes], object]] = {
    "status": topics.parse_status,
    "telemetry": topics.parse_telemetry,
    "meta": meta.parse_meta,
    "event": event.parse_event,
    "answer": answer.parse_answer,
    "alert": alert.parse_alert,
}
INVALID = [
    {**v, "kind": kind, "id": f"{kind}: {v['name']}"}
    for kind in PARSERS
    for v in V[kind]["invalid"]
]


@pytest.mark.parametrize("v", INVALID, ids=lambda v: v["id"])
def test_an_invalid_payload_is_rejected_with_its_reason(v: dict[str, Any]) -> None:
    parse = PARSERS[v["kind"]]
    with pytest.raises(topics.PayloadRejected) as caught:
        parsed = parse(_raw(v))
        if v.get("gap"):  # a valid event whose gap report is broken
            event.gap_of(parsed, "kitchen")  # type: ignore[arg-type]
    assert caught.value.reason == v["reason"]
    assert caught.value.detail  # a person can read what was wrong


@_named(V["answer"]["parse"])
def test_an_answer_from_anybody_is_read_as_the_vectors_say(v: dict[str, Any]) -> None:
    assert asdict(answer.parse_answer(_raw(v))) == v["value"]


@_named(V["event"]["parse"])
def test_an_event_with_only_its_name_is_read(v: dict[str, Any]) -> None:
    assert asdict(event.parse_event(_raw(v))) == v["value"]
