# Runs under the MicroPython unix port (see tests/test_firmware.py), not CPython:
# the firmware's encoder and command decoder against the shared vectors.
import json
import sys

import ring
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

def replayed(r, case):
    # A ring filled with the vector's readings, then the case's replay command to the end.
    out = []
    enc = wire.Encoder(out.append, r["device"], r["boot"], r["metrics"],
                       ring.Ring(r["ring"], len(r["metrics"])))
    for seq, uptime_ms, values in r["readings"]:
        enc.reading(seq, uptime_ms, values)
    originals = "".join(out).splitlines()
    del out[:]
    start, stop = ring.plan(enc.ring, case["args"], r["boot"])
    replay = ring.Replay(enc, case["id"], r["boot"], start, stop)
    turns = 1
    while not replay.step():
        turns += 1
    return originals, "".join(out).splitlines(), turns


r = vectors["replay"]
for case in r["cases"]:
    originals, lines, turns = replayed(r, case)
    check(case["name"], lines, case["lines"] + [case["answer"]])
    by_seq = dict([(json.loads(line)["seq"], line) for line in originals])
    again = [line for line in lines if '"type":"reading"' in line]
    check(case["name"] + ": byte for byte the originals", again,
          [by_seq[json.loads(line)["seq"]] for line in again])
    check(case["name"] + ": a few lines per turn", turns,
          max(1, (len(again) + ring.REPLAY_BATCH - 1) // ring.REPLAY_BATCH))
    got = wire.decode_command(case["command"])
    check(case["name"] + ": the command decodes", list(got), [case["id"], "replay", case["args"], None])

for case in r["rejected"]:
    try:
        ring.plan(ring.Ring(r["ring"], 2), case["args"], r["boot"])
        got = None
    except ValueError as e:
        got = str(e)
    check(case["name"], got, case["error"])

print("checked %d, failed %d" % (checked, failures))
sys.exit(1 if failures else 0)
