# What a board in battery mode carries from one wake to the next, in RTC memory (it
# survives deep sleep, not a power cut): boot id, seq, uptime, interval, when the clock
# was last set, the drop count, and the readings not yet published (backlog.py). RAM is
# lost in deep sleep, and flash would wear out under a write per wake; RTC memory costs
# nothing to write. It is small (ESP32 2 KB, ESP8266 492 bytes), so the backlog kept across
# sleeps is what fits: capacity() says how many readings.
import binascii
import struct
from micropython import const

MAGIC = b"iPs1"
FORMAT = "<4s4sIqIqBIH"
HEAD_SIZE = const(39)
META_DUE = const(1)  # flags: the meta is still to be published


class State:
    def __init__(self, boot):
        self.boot = boot
        self.seq = 0
        self.uptime_ms = 0  # when the board wakes: the uptime it went to sleep with + sleep
        self.interval_ms = 0  # 0: the config's
        self.synced_ms = -1  # uptime when the clock was last set; -1: never in this boot
        self.flags = 0
        self.dropped = 0  # readings the backlog dropped, not yet reported
        self.n_metrics = 0
        self.records = b""  # the backlog's to_bytes()


def capacity(memory_size, record_size):
    return max(0, (memory_size - HEAD_SIZE) // record_size)


def pack(state, backlog):
    head = struct.pack(FORMAT, MAGIC, binascii.unhexlify(state.boot), state.seq,
                       state.uptime_ms, state.interval_ms, state.synced_ms, state.flags,
                       backlog.dropped, backlog.n_metrics)
    return head + backlog.to_bytes()


def unpack(data):
    # -> State, or None if data is not a state of ours (after a cold boot RTC memory is
    # empty or random).
    if data is None or len(data) < HEAD_SIZE or data[:4] != MAGIC:
        return None
    magic, boot, seq, uptime, interval, synced, flags, dropped, n = struct.unpack(
        FORMAT, data[:HEAD_SIZE])
    state = State(binascii.hexlify(boot).decode())
    state.seq, state.uptime_ms, state.interval_ms = seq, uptime, interval
    state.synced_ms, state.flags, state.dropped = synced, flags, dropped
    state.n_metrics, state.records = n, memoryview(data)[HEAD_SIZE:]
    return state
