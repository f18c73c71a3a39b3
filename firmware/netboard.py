# The parts of a board that a board on Wi-Fi needs and the serial firmware does not: the
# radio, the clock (NTP), RTC memory and deep sleep (docs/firmware.md). Where the unix port
# lacks a part, its stand-in behaves as the part does, so the tests run the same code:
# RTC memory is a file, and deep sleep ends the process with a status that the host
# harness answers by starting it again after the interval, as the RTC timer would.
import os
import sys
import time

# RTC memory that survives deep sleep, in bytes; the unix port's stand-in is a file the
# size of an ESP32's. rp2 has none: battery mode there sleeps lightly (docs/firmware.md).
RTC_MEMORY = {"linux": 2048, "esp32": 2048, "esp8266": 492}
RTC_FILE = "rtc.mem"  # unix: RTC memory
SLEEP_FILE = "deepsleep.ms"  # unix: how long the "board" sleeps, for the host harness
DEEPSLEEP_EXIT = 44  # unix: the process ends with this status to "sleep"
WAKE_ENV = "IOTPIPE_WAKE"  # unix: set to "deepsleep" by the harness that wakes it
EPOCH_2000 = 946684800  # Unix seconds at 2000-01-01, the epoch of embedded ports


def wifi_connect(ssid, password, timeout_ms, feed):
    # Joins the network (raises OSError if it cannot within timeout_ms). The unix port's
    # host network is always joined.
    try:
        import network
    except ImportError:
        return
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if wlan.isconnected():
        return
    if not ssid:
        raise OSError("no wifi_ssid in config.json")
    wlan.connect(ssid, password or "")
    start = time.ticks_ms()
    while not wlan.isconnected():
        if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:
            wlan.active(False)  # a clean start next time, and no radio burning the battery
            raise OSError("Wi-Fi %r not joined in %d ms" % (ssid, timeout_ms))
        feed()
        time.sleep_ms(50)


def set_clock(host):
    # Sets the RTC to UTC by NTP (raises OSError). The unix port's clock is the host's,
    # already right.
    if sys.platform == "linux":
        return
    import ntptime

    if host:
        ntptime.host = host
    ntptime.settime()


def wall_ms():
    # Unix milliseconds from the RTC, whatever the port's epoch (1970 or 2000).
    ns = getattr(time, "time_ns", None)
    ms = ns() // 1000000 if ns else int(time.time()) * 1000
    return ms + EPOCH_2000 * 1000 if time.gmtime(0)[0] == 2000 else ms


def woke_from_deepsleep():
    if sys.platform == "linux":
        return os.getenv(WAKE_ENV) == "deepsleep"
    try:
        import machine

        return machine.reset_cause() == machine.DEEPSLEEP_RESET
    except (ImportError, AttributeError):
        return False


def rtc_memory_size():
    return RTC_MEMORY.get(sys.platform, 0)


def rtc_load():
    # What rtc_save() left before a deep sleep; None after any other reset.
    if not woke_from_deepsleep():
        return None
    if sys.platform == "linux":
        try:
            with open(RTC_FILE, "rb") as f:
                return f.read()
        except OSError:
            return None
    import machine

    return machine.RTC().memory()


def rtc_save(data):
    if sys.platform == "linux":
        with open(RTC_FILE, "wb") as f:
            f.write(data)
        return
    import machine

    machine.RTC().memory(data)


def deepsleep(ms):
    # Never returns: the board resets when the timer ends (main.py runs again). The unix
    # port ends the process instead, and the host harness starts it again after ms with
    # IOTPIPE_WAKE=deepsleep, as a board's RTC timer would (iotpipe/board/virtual.py).
    if sys.platform == "linux":
        with open(SLEEP_FILE, "w") as f:
            f.write(str(ms))
        sys.exit(DEEPSLEEP_EXIT)
    import machine

    machine.deepsleep(ms)


def lightsleep(ms):
    # For a port without RTC memory (rp2): RAM is kept and the program goes on.
    try:
        import machine

        machine.lightsleep(ms)
    except (ImportError, AttributeError):
        time.sleep_ms(ms)
