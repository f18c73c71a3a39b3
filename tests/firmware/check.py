# A tiny test harness for scripts run by the MicroPython unix port (no pytest there):
# each check prints one line, and the last line says how many failed.
import json
import sys

failures = []
checked = [0]


def check(name, ok, detail=""):
    checked[0] += 1
    if ok:
        print("ok  ", name)
    else:
        failures.append(name)
        print("FAIL", name, detail)


def done():
    print("checked %d, failed %d" % (checked[0], len(failures)))
    sys.exit(1 if failures else 0)


class Lines:
    # An in-memory serial port: collects what the firmware writes, split into lines.
    def __init__(self):
        self.parts = []

    def write(self, text):
        self.parts.append(text)

    def take(self):
        text = "".join(self.parts)
        self.parts = []
        return [json.loads(line) for line in text.split("\n") if line]


def config(**given):
    base = {
        "device_id": "fw-test",
        "board": "unix",
        "interval_ms": 20,
        "sensors": [{"type": "sim"}],
        "wdt_ms": 0,
        "boot_delay_ms": 0,
        "stop_pin": None,
    }
    base.update(given)
    return base
