# Runs under the MicroPython unix port (see tests/test_firmware.py), not CPython:
# the firmware's encoder and command decoder against the shared vectors.
import json
import sys

import wire

failures = 0
checked = 0


def check(name, got, want):
    global failures, checked
    checked += 1
    if got != want:
        failures += 1
        print("FAIL", name)
        print("  got ", repr(got))
        print("  want", repr(want))


with open(sys.argv[1]) as f:
    vectors = json.load(f)

for v in vectors["encode"]:
    out = []
    enc = wire.Encoder(
        out.append, v.get("device", "x"), v.get("boot", "00000000"), v.get("metrics", [])
    )
    kind = v["kind"]
    if kind == "reading":
        enc.reading(v["seq"], v["uptime_ms"], v["values"])
    elif kind == "hello":
        enc.hello(v["uptime_ms"], v["fw"], v["board"], v["sensors"], v["metrics"], v["interval_ms"])
    elif kind == "error":
        enc.error(v["uptime_ms"], v["sensor"], v["reason"])
    elif kind == "event":
        enc.event(v["uptime_ms"], v["event"], v["data"])
    elif kind == "answer":
        enc.answer(v["id"], v["ok"], v["result"] if v["ok"] else v["error"])
    check(v["name"], "".join(out), v["line"] + "\n")

for v in vectors["commands"]:
    got = wire.decode_command(v["line"])
    check(v["name"], list(got), [v["id"], v["cmd"], v["args"], v["error"]])

print("checked %d, failed %d" % (checked, failures))
sys.exit(1 if failures else 0)
