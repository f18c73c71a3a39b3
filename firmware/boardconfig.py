# The config file that `iotpipe board deploy` writes, the defaults of each port, the
# device id, and the ways a user stops the program at boot (docs/firmware.md). Needed
# only while the board starts (and for `set` with save): main.py unloads it afterwards
# (board.forget), which leaves its ~4 KB of an ESP8266's heap to the running program.
import json
import os
import sys

from board import MAX_INTERVAL_MS, MIN_INTERVAL_MS

CONFIG_FILE = "config.json"
STOP_FILE = "iotpipe.stop"  # present at boot: stay in the REPL (deploy uses it too)

# Per port (sys.platform): sensors, watchdog timeout and the Ctrl-C window at boot.
# rp2's watchdog cannot wait longer than 8.3 s; the unix port has no watchdog at all.
PORTS = {
    "linux": ([{"type": "sim"}], 0, 0),
    "esp32": ([{"type": "dht22", "pin": 4}, {"type": "mcu"}], 8000, 1500),
    "esp8266": ([{"type": "dht22", "pin": 4}], 8000, 1500),
    "rp2": ([{"type": "dht22", "pin": 15}, {"type": "mcu"}], 8000, 1500),
}
BOARD_NAMES = {"linux": "unix"}
KEYS = ("device_id", "board", "interval_ms", "sensors", "wdt_ms", "boot_delay_ms", "stop_pin",
        "transport", "wifi_ssid", "wifi_password", "mqtt_host", "mqtt_port", "mqtt_user",
        "mqtt_password", "base_topic", "mqtt_keepalive_s", "deep_sleep", "battery_adc",
        "buffer_max", "ntp_host", "mqtt_ca", "ring_max", "keep_acked_s")
# Readings a serial board keeps for a `replay` (ring.py), 8 bytes + 4 per metric each:
# 100 of 3 metrics is 2 KB of an ESP8266's 38 KB heap; ESP32 and RP2040 have far more.
RING = {"linux": 2000, "esp32": 1000, "rp2": 1000, "esp8266": 100}
MAX_RING = 10000


def defaults():
    sensors, wdt_ms, delay_ms = PORTS.get(sys.platform, ([{"type": "sim"}], 0, 1500))
    board = BOARD_NAMES.get(sys.platform, sys.platform)
    return {
        "device_id": None,
        "board": board,
        "interval_ms": 1000,
        "sensors": sensors,
        "wdt_ms": wdt_ms,
        "boot_delay_ms": delay_ms,
        "stop_pin": None,
        "transport": "serial",  # the defaults of the keys for "mqtt": netconfig.DEFAULTS
    }


def load_config(path=CONFIG_FILE):
    # -> (config, problems). A bad or missing file never stops the board: each problem is
    # reported (as an error line) and the default used instead, so a fresh board reports.
    config = defaults()
    problems = []
    try:
        with open(path) as f:
            given = json.load(f)
        if not isinstance(given, dict):
            raise ValueError("not a JSON object")
    except OSError:
        given = {}
    except ValueError as e:
        given = {}
        problems.append("%s unreadable (%s); using defaults" % (path, e))
    for key in given:
        if key not in KEYS:
            problems.append("unknown config key %r ignored" % key)
        elif given[key] is not None:
            config[key] = given[key]
    check_config(config, problems)
    if config.get("ring_max") is None:
        config["ring_max"] = RING.get(sys.platform, 100)
    if not config["device_id"]:
        config["device_id"] = default_device_id(config["board"])
    return config, problems


def check_config(config, problems):
    fallback = defaults()
    interval = config["interval_ms"]
    if not isinstance(interval, int) or not MIN_INTERVAL_MS <= interval <= MAX_INTERVAL_MS:
        problems.append("interval_ms %r out of range" % (interval,))
        config["interval_ms"] = fallback["interval_ms"]
    for key in ("wdt_ms", "boot_delay_ms"):
        if not isinstance(config[key], int) or config[key] < 0:
            problems.append("%s %r is not a whole number >= 0" % (key, config[key]))
            config[key] = fallback[key]
    ring = config.get("ring_max")
    if ring is not None and (not isinstance(ring, int) or isinstance(ring, bool)
                             or not 0 <= ring <= MAX_RING):
        problems.append("ring_max %r is not a whole number 0-%d" % (ring, MAX_RING))
        config["ring_max"] = None
    if not isinstance(config["sensors"], list) or not config["sensors"]:
        problems.append("sensors must be a non-empty list")
        config["sensors"] = fallback["sensors"]
    if not isinstance(config["device_id"], (str, type(None))):
        problems.append("device_id must be text")
        config["device_id"] = None
    if config["transport"] != "serial":
        import netconfig  # only then: the serial firmware need not hold what it never uses

        netconfig.check(config, problems)


def save_config(config, path=CONFIG_FILE):
    # Written to a new file first: a reset half way leaves the old config, not a torn one.
    with open(path + ".new", "w") as f:
        json.dump(dict([(k, config[k]) for k in KEYS if k in config]), f)
    os.rename(path + ".new", path)


def default_device_id(board):
    try:
        import machine

        raw = machine.unique_id()
    except (ImportError, AttributeError):
        return board
    return board + "-" + "".join(["%02x" % b for b in raw[-3:]])


def stop_requested(config):
    # The escape hatch, checked by main.py before anything else: a stop file on the
    # flash, or the configured pin held low (to GND) while the board powers up.
    try:
        os.stat(STOP_FILE)
        return "file " + STOP_FILE + " present"
    except OSError:
        pass
    pin = config.get("stop_pin")
    if pin is not None:
        try:
            import machine

            if machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP).value() == 0:
                return "pin %s held low" % (pin,)
        except Exception as e:  # a wrong pin number must not lock the user out either
            print("iotpipe: stop_pin %r unusable: %r" % (pin, e))
    return None
