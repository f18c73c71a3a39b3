# What a running board needs of its port: the interval bounds, the boot id, the
# watchdog, the reset, and unloading what only the start needed. Reading the config is
# boardconfig.py; the parts only a board on Wi-Fi needs (radio, clock, RTC memory, deep sleep)
# are in netboard.py.
import os
import sys

MIN_INTERVAL_MS = 1
MAX_INTERVAL_MS = 86400000


def forget(*names):
    # Unloads modules used only at start: once nothing refers to them, the collector
    # frees their code (what a frozen module would not cost in the first place).
    for name in names:
        sys.modules.pop(name, None)


def boot_id():
    return "".join(["%02x" % b for b in os.urandom(4)])


class NoWatchdog:
    def feed(self):
        pass


def watchdog(timeout_ms):
    # Once started it cannot be stopped (esp32, rp2): the main loop must feed it.
    if not timeout_ms:
        return NoWatchdog()
    try:
        import machine

        try:
            return machine.WDT(timeout=timeout_ms)
        except TypeError:  # esp8266: fixed timeout, no keyword
            return machine.WDT()
    except (ImportError, AttributeError):
        return NoWatchdog()


def reset():
    import machine

    machine.reset()
