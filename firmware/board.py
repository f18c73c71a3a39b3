# Everything that differs between boards, in one place: the config file the deploy
# command writes, the board's name and its device id.
import json
import sys

CONFIG_FILE = "config.json"
DEFAULTS = {"interval_ms": 1000, "sensors": None, "device_id": None, "board": None}
DEFAULT_SENSORS = {
    "linux": [{"type": "sim"}],
    "esp32": [{"type": "dht22", "pin": 4}, {"type": "mcu"}],
    "esp8266": [{"type": "dht22", "pin": 4}],
    "rp2": [{"type": "dht22", "pin": 15}, {"type": "mcu"}],
    "pyboard": [{"type": "dht22", "pin": "X1"}],
}
BOARD_NAMES = {"linux": "unix"}


def load_config(path=CONFIG_FILE):
    config = dict(DEFAULTS)
    try:
        with open(path) as f:
            config.update(json.load(f))
    except OSError:
        pass  # no config yet: run with defaults, so a fresh board still reports
    if not config["board"]:
        config["board"] = BOARD_NAMES.get(sys.platform, sys.platform)
    if not config["sensors"]:
        config["sensors"] = DEFAULT_SENSORS.get(sys.platform, [{"type": "sim"}])
    if not config["device_id"]:
        config["device_id"] = default_device_id(config["board"])
    return config


def default_device_id(board):
    try:
        import machine

        raw = machine.unique_id()
    except (ImportError, AttributeError):
        return board
    return board + "-" + "".join(["%02x" % b for b in raw[-3:]])


def boot_id():
    import os

    return "".join(["%02x" % b for b in os.urandom(4)])
