# The loops of a board on MQTT (transport "mqtt"); loop.py is the serial one.
#   always on:  sample on schedule; between readings take messages, ping, reconnect
#   battery:    wake, read, connect, publish (with what waited), answer the requests
#               queued while asleep, disconnect, deep sleep for the rest of the interval;
#               what must survive the sleep is in RTC memory (rtcstate.py)
import time
from micropython import const

import backlog
import board
import netboard
import node
import rtcstate
import uplink

MAX_WAIT_MS = const(1000)  # the watchdog is fed at least this often
DRAIN_MS = const(2000)  # battery: longest wait for the requests queued while asleep
MIN_SLEEP_MS = const(100)


def build(config, problems, boot, rtc_bytes=0):
    # -> (node, uplink). With rtc_bytes the backlog is no larger than RTC memory holds.
    # In battery mode every wake is a reconnect: keeping acknowledged copies would send
    # each reading again at every wake for keep_acked_s (docs/firmware.md, Battery mode).
    keep_s = 0 if config["deep_sleep"] else config["keep_acked_s"]

    def make_out(device, boot_, metrics):
        capacity = config["buffer_max"]
        if rtc_bytes:
            size = backlog.HEAD_SIZE + 4 * len(metrics)
            capacity = min(capacity, rtcstate.capacity(rtc_bytes, size))
        return uplink.Outbox(device, boot_, metrics, capacity, keep_s)

    specs = config["sensors"]
    if config["battery_adc"]:  # one more sensor (sensor_battery.py)
        specs = specs + [dict(config["battery_adc"], type="battery")]
    n = node.Node(config, None, boot, problems, make_out, specs)
    return n, uplink.Uplink(config, n, lambda: None)


def run_online(n, link, wdt, readings=-1):
    # readings >= 0 stops after that many (for tests); a board runs until reset.
    link.feed = wdt.feed
    n.hello()
    due = time.ticks_ms()
    while readings != 0:
        wdt.feed()
        n.uptime.now()
        if n.reset_pending:
            link.goodbye()
            board.reset()
        link.keep_up()
        wait = time.ticks_diff(due, time.ticks_ms())
        if wait <= 0:
            n.sample()
            readings -= 1
            due = time.ticks_add(due, n.interval_ms)
            if time.ticks_diff(due, time.ticks_ms()) < 0:
                due = time.ticks_ms()  # fell behind (slow sensor, long reconnect): skip
            continue
        link.wait(min(wait, MAX_WAIT_MS))


def cycle(n, link, started):
    # One wake: read, publish, answer; -> how long to sleep so readings keep their rate.
    n.sample()
    try:
        link.connect(clean_session=False)  # the broker queues requests while we sleep
        link.flush()
        link.drain(DRAIN_MS)
        while link.requests:  # a `read` request makes a reading to publish too
            link.handle_requests()
            link.flush()
        link.client.disconnect()  # a clean goodbye: status stays "online" while asleep
    except uplink.FAILED as e:
        link.lost(e)
    link.connected = False
    awake = time.ticks_diff(time.ticks_ms(), started)
    print("iotpipe: awake %d ms, %d readings waiting" % (awake, len(n.out.backlog)))
    return max(MIN_SLEEP_MS, n.interval_ms - awake)


def wake(config, problems):
    # -> (node, uplink, state): from RTC memory after a deep sleep, else a fresh boot.
    size = netboard.rtc_memory_size()
    state = rtcstate.unpack(netboard.rtc_load())
    woke = state is not None
    if not woke:
        state = rtcstate.State(board.boot_id())
    n, link = build(config, () if woke else problems, state.boot, size)
    n.hello()
    out = n.out
    if woke:
        out.events = []  # config problems were reported at the first boot
        out.meta_due = bool(state.flags & rtcstate.META_DUE)
        n.seq, n.uptime.ms = state.seq, state.uptime_ms
        n.interval_ms = state.interval_ms or n.interval_ms
        if state.n_metrics == len(n.metrics):  # else the sensors changed: not ours to read
            out.backlog.load(state.records)
        out.backlog.dropped += state.dropped
    link.synced_ms = state.synced_ms
    out.clock_ok = state.synced_ms >= 0
    return n, link, state


def run_battery(config, problems, wdt):
    started = time.ticks_ms()
    if not netboard.rtc_memory_size():
        return run_light(config, problems, wdt)
    n, link, state = wake(config, problems)
    link.feed = wdt.feed
    sleep_ms = cycle(n, link, started)
    if n.reset_pending:
        board.reset()
    state.seq, state.interval_ms, state.synced_ms = n.seq, n.interval_ms, link.synced_ms
    state.uptime_ms = n.uptime.now() + sleep_ms
    state.flags = rtcstate.META_DUE if n.out.meta_due else 0
    netboard.rtc_save(rtcstate.pack(state, n.out.backlog))
    netboard.deepsleep(sleep_ms)


def run_light(config, problems, wdt):
    # A port without RTC memory (rp2): light sleep keeps RAM, so the program goes on.
    n, link = build(config, problems, board.boot_id())
    link.feed = wdt.feed
    n.hello()
    while True:
        left = cycle(n, link, time.ticks_ms())
        if n.reset_pending:
            board.reset()
        while left > 0:
            wdt.feed()
            netboard.lightsleep(min(left, MAX_WAIT_MS * 4))
            left -= MAX_WAIT_MS * 4


def main(config, problems):
    wdt = board.watchdog(config["wdt_ms"])
    if config["deep_sleep"]:
        run_battery(config, problems, wdt)
    else:
        n, link = build(config, problems, board.boot_id())
        run_online(n, link, wdt)
