# Runs under the MicroPython unix port (tests/test_firmware_micropython.py): the node's
# commands, its sensor error handling and the main loop's rate, with in-memory lines.
import sys
import time

import loop
import node
from check import Lines, check, config, done


def make(**given):
    out = Lines()
    return node.Node(config(**given), out.write, "0a1b2c3d"), out


def commands():
    n, out = make()
    n.handle('{"id":"p1","cmd":"ping"}')
    n.handle('{"id":"r1","cmd":"read"}')
    n.handle('{"id":"i1","cmd":"info"}')
    n.handle('{"id":"s1","cmd":"set","args":{"interval_ms":250}}')
    n.handle('{"id":"s2","cmd":"set","args":{"interval_ms":0}}')
    n.handle('{"id":"s3","cmd":"set","args":{"interval_ms":true}}')
    n.handle('{"id":"s4","cmd":"set","args":{"colour":"red"}}')
    n.handle('{"id":"u1","cmd":"fly"}')
    n.handle('{"id":"a1","cmd":"set","args":[1]}')
    n.handle("this is not json")
    n.handle('{"cmd":"ping"}')
    n.handle("[1, 2]")
    lines = out.take()
    answers = dict([(a["id"], a) for a in lines if a["type"] == "answer"])
    check("ping answers with its id", answers["p1"]["ok"] and "uptime_ms" in answers["p1"]["result"])
    check("read answers and writes the reading",
          answers["r1"]["ok"] and [x for x in lines if x["type"] == "reading"][0]["seq"] == 0)
    info = answers["i1"]["result"]
    check("info describes the board",
          info["device"] == "fw-test" and info["interval_ms"] == 20 and info["sensors"] == ["sim"]
          and info["units"] == {"temperature": "°C", "humidity": "%"} and info["mem_free"] > 0)
    check("info states the simulated sensor's decimals",
          info["decimals"] == {"temperature": 2, "humidity": 1}, info.get("decimals"))
    check("set changes the interval", answers["s1"]["result"]["interval_ms"] == 250
          and n.interval_ms == 250)
    after_set = lines[[x.get("id") for x in lines].index("s1") + 1]
    check("a set that worked is followed by a hello with the new interval",
          after_set["type"] == "hello" and after_set["interval_ms"] == 250, after_set)
    check("only that one: a refused set announces nothing",
          [x["interval_ms"] for x in lines if x["type"] == "hello"] == [250])
    for bad in ("s2", "s3", "s4", "u1", "a1"):
        check("bad command %s is an error answer with its id" % bad,
              answers[bad]["ok"] is False and answers[bad]["error"])
    check("a command without a readable id is answered with id null",
          [a["ok"] for a in lines if a["type"] == "answer" and a["id"] is None] == [False] * 3)


def failing_sensor():
    n, out = make(sensors=[{"type": "sim"}, {"type": "failing", "name": "dead"},
                           {"type": "sim", "seed": 2, "prefix": "out_", "fail_every": 2}])
    for _ in range(4):
        n.sample()
    lines = out.take()
    readings = [x for x in lines if x["type"] == "reading"]
    errors = [x for x in lines if x["type"] == "error"]
    check("a failing sensor does not stop the readings", [r["seq"] for r in readings] == [0, 1, 2, 3])
    check("its error line names the sensor and the reason",
          errors[0]["sensor"] == "dead" and errors[0]["reason"] == "OSError ETIMEDOUT")
    check("a sensor failing every other read is reported each time and retried",
          len([e for e in errors if e["sensor"] == "sim"]) == 2
          and ["out_temperature" in r["metrics"] for r in readings] == [True, False, True, False])
    check("the failed sensor's metrics are left out",
          all(["broken" not in r["metrics"] for r in readings]))


def bad_setup():
    n, out = make(sensors=[{"type": "sim"}, {"type": "sim"}, {"type": "nope"},
                           {"type": "mcu"}, {"type": "sim", "prefix": "Bad "}, 7])
    n.hello()
    lines = out.take()
    check("hello comes first and lists the working sensors",
          lines[0]["type"] == "hello" and lines[0]["sensors"] == ["sim"])
    reasons = [e["reason"] for e in lines if e["type"] == "error"]
    check("each sensor that cannot be set up is an error line at boot", len(reasons) == 5, reasons)
    check("a duplicate metric name says to use a prefix", "prefix" in reasons[0])


def loop_rate():
    n, out = make(interval_ms=20)
    start = time.ticks_ms()
    loop.run(n, sys.stdin, readings=25)
    took = time.ticks_diff(time.ticks_ms(), start)
    lines = out.take()
    readings = [x for x in lines if x["type"] == "reading"]
    steps = [b["uptime_ms"] - a["uptime_ms"] for a, b in zip(readings, readings[1:])]
    steps.sort()
    check("the loop writes hello, then readings", lines[0]["type"] == "hello" and len(readings) == 25)
    check("readings come at the set interval", 18 <= steps[len(steps) // 2] <= 22, steps)
    check("25 readings at 20 ms take about 480 ms", 440 <= took <= 700, took)


commands()
failing_sensor()
bad_setup()
loop_rate()
done()
