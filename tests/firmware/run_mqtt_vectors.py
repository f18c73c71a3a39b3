# Runs under the MicroPython unix port (tests/test_firmware_mqtt.py), not CPython: a board
# that publishes itself (firmware/payload.py) against the MQTT contract's shared vectors
# (tests/vectors/mqtt.json), which the host's tests check too (tests/test_mqttwire.py).
import json
import sys

import payload
from check import check, done

with open(sys.argv[1]) as f:
    vectors = json.load(f)
BASE = vectors["base"]
DEFAULT_REPLY = "iotpipe/kitchen/reply"


def wanted(v):
    # The board's bytes where they differ from the host's, else the host's.
    return v["board_payload"] if "board_payload" in v else v["payload"]


def topics():
    for v in vectors["topics"]["build"]:
        if "kind" in v:
            got = payload.topic(v.get("base", BASE), v["device"], v["kind"])
            check("topic " + v["topic"], got == v["topic"], got)


def telemetry():
    for v in vectors["telemetry"]["build"]:
        b, value = v["board"], v["value"]
        p = payload.Payloads(value["device"], value["boot"], b["metrics"])
        got = p.telemetry(value["seq"], b["ts_ms"], value["uptime_ms"], b["values"])
        check("telemetry: " + v["name"], got == wanted(v), got)


def meta():
    for v in vectors["meta"]["build"]:
        if "board" not in v:
            continue  # a hello of older firmware: this one always states its decimals
        b, value = v["board"], v["value"]
        p = payload.Payloads(value["device"], value["boot"], b["metrics"])
        got = p.meta(b["fw"], b["board"], b["sensors"], b["metrics"], b["interval_ms"], b["ts_ms"])
        check("meta: " + v["name"], got == wanted(v), got)


def events():
    for v in vectors["event"]["build"]:
        if "board" not in v:
            continue  # the bridge's alone (a sensor error line, a gap report)
        value = v["value"]
        p = payload.Payloads(value["device"], value["boot"], [])
        got = p.event(value["uptime_ms"], v["board"]["ts_ms"], value["event"], value["data"])
        check("event: " + v["name"], got == wanted(v), got)


def answers():
    for v in vectors["answer"]["build"]:
        got = payload.answer(v["id"], v["ok"], v["result"] if v["ok"] else v["error"])
        check("answer: " + v["name"], got == wanted(v), got)


def requests():
    for v in vectors["request"]["parse"]:
        value = v["value"]
        got = payload.decode_request(v["payload"].encode(), DEFAULT_REPLY)
        want = (value["id"], value["cmd"], value["args"], value["reply_to"] or DEFAULT_REPLY, None)
        check("request: " + v["name"], got == want, got)
    for v in vectors["request"]["invalid"]:
        if v.get("host_only"):
            continue
        rid, _cmd, _args, reply, error = payload.decode_request(v["payload"].encode(),
                                                                DEFAULT_REPLY)
        ok = rid == v["id"] and reply == (v["reply_to"] or DEFAULT_REPLY)
        check("refused request: " + v["name"], ok and error is not None
              and error.startswith(v["error"]), (rid, reply, error))


topics()
telemetry()
meta()
events()
answers()
requests()
done()
