# Readings waiting to be published: a ring of fixed-size packed records in one bytearray
# allocated at boot, so an outage of any length costs no more RAM than the first minute.
# When it is full the oldest reading is dropped and counted (uplink.py says so in an
# event once connected). A record is seq, uptime_ms, ts_ms (-1: taken before the clock
# was set) and one float32 per metric (NaN: that sensor failed). The whole ring also
# packs into bytes for RTC memory, so readings survive a deep sleep (rtcstate.py).
import struct
from micropython import const

HEAD = "<Iqq"
HEAD_SIZE = const(20)
NAN = float("nan")


class Backlog:
    def __init__(self, capacity, n_metrics):
        self.capacity = max(1, capacity)
        self.n_metrics = n_metrics
        self.fmt = HEAD + "f" * n_metrics
        self.size = HEAD_SIZE + 4 * n_metrics
        self.buf = bytearray(self.capacity * self.size)
        self.values = [None] * n_metrics  # what oldest() fills, reused
        self.start = 0
        self.count = 0
        self.dropped = 0  # since it was last reported

    def __len__(self):
        return self.count

    def push(self, seq, uptime_ms, ts_ms, values):
        if self.count == self.capacity:
            self.start = (self.start + 1) % self.capacity
            self.count -= 1
            self.dropped += 1
        at = (self.start + self.count) % self.capacity * self.size
        struct.pack_into(HEAD, self.buf, at, seq, uptime_ms, ts_ms)
        at += HEAD_SIZE
        for v in values:
            struct.pack_into("<f", self.buf, at, NAN if v is None else v)
            at += 4
        self.count += 1

    def oldest(self):
        # -> (seq, uptime_ms, ts_ms, values): values is reused by the next call.
        if not self.count:
            return None
        at = self.start * self.size
        seq, uptime_ms, ts_ms = struct.unpack_from(HEAD, self.buf, at)
        at += HEAD_SIZE
        for i in range(self.n_metrics):
            self.values[i] = struct.unpack_from("<f", self.buf, at + 4 * i)[0]
        return seq, uptime_ms, ts_ms, self.values

    def pop(self):
        if self.count:
            self.start = (self.start + 1) % self.capacity
            self.count -= 1

    def to_bytes(self):
        # The waiting records oldest first, for RTC memory.
        out = bytearray(self.count * self.size)
        for i in range(self.count):
            at = (self.start + i) % self.capacity * self.size
            out[i * self.size:(i + 1) * self.size] = self.buf[at:at + self.size]
        return out

    def load(self, data):
        # Records from to_bytes(); ones beyond capacity (a smaller buffer_max since) are
        # dropped oldest first and counted.
        n = len(data) // self.size
        skip = max(0, n - self.capacity)
        self.dropped += skip
        self.start = 0
        self.count = n - skip
        self.buf[:self.count * self.size] = data[skip * self.size:n * self.size]
