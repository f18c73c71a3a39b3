# Readings waiting to be published, and copies of those the broker acknowledged lately: a
# ring of fixed-size packed records in one bytearray allocated at boot, so an outage of
# any length costs no more RAM than the first minute. A record is seq, uptime_ms, ts_ms
# (-1: taken before the clock was set) and one float32 per metric (NaN: that sensor
# failed). The waiting records also pack into bytes for RTC memory, so readings survive a
# deep sleep (rtcstate.py).
#
# Why copies: a PUBACK means Mosquitto has the message, not that it has written it down
# (it saves every autosave_interval, 60 s in iotpipe/broker/conf.d/iotpipe.conf); one killed
# restarts from its last save and loses what it had not handed to a subscriber that was
# away. So with keep_s an acknowledged record stays, with the uptime second of its
# PUBACK, and after a reconnect resend() puts those acknowledged within keep_s back in
# front of the waiting ones. Copies are the oldest records, so a full ring overwrites them
# first; only a waiting reading pushed out is a drop (counted; uplink.py reports it).
import struct
from micropython import const

HEAD = "<Iqq"
HEAD_SIZE = const(20)
NAN = float("nan")


class Backlog:
    def __init__(self, capacity, n_metrics, keep_s=0):
        self.capacity = max(1, capacity)
        self.n_metrics = n_metrics
        self.fmt = HEAD + "f" * n_metrics
        self.size = HEAD_SIZE + 4 * n_metrics
        self.buf = bytearray(self.capacity * self.size)
        self.values = [None] * n_metrics  # what oldest() fills, reused
        self.keep_s = keep_s
        # Apart from the records, so RTC memory (waiting records only) holds as many.
        self.acked_s = bytearray(4 * self.capacity) if keep_s else None
        self.first = 0  # slot of the oldest record: a copy, else the oldest waiting
        self.kept = 0  # acknowledged copies, in front of the waiting records
        self.again = 0  # of the waiting records, the first this many are copies sent again
        self.count = 0  # waiting: copies to send again, then readings never acknowledged
        self.dropped = 0  # since it was last reported

    def __len__(self):
        return self.count

    def _slot(self, i):
        return (self.first + i) % self.capacity

    def push(self, seq, uptime_ms, ts_ms, values):
        if self.kept + self.count == self.capacity:
            self.first = self._slot(1)
            if self.kept:  # a copy gives way: not a drop, the broker had it
                self.kept -= 1
            else:
                self.count -= 1
                if self.again:
                    self.again -= 1
                else:
                    self.dropped += 1
        at = self._slot(self.kept + self.count) * self.size
        struct.pack_into(HEAD, self.buf, at, seq, uptime_ms, ts_ms)
        at += HEAD_SIZE
        for v in values:
            struct.pack_into("<f", self.buf, at, NAN if v is None else v)
            at += 4
        self.count += 1

    def oldest(self):
        # -> (seq, uptime_ms, ts_ms, values) of the next to send: values is reused.
        if not self.count:
            return None
        at = self._slot(self.kept) * self.size
        seq, uptime_ms, ts_ms = struct.unpack_from(HEAD, self.buf, at)
        at += HEAD_SIZE
        for i in range(self.n_metrics):
            self.values[i] = struct.unpack_from("<f", self.buf, at + 4 * i)[0]
        return seq, uptime_ms, ts_ms, self.values

    def pop(self, now_s, ts_ms):
        # oldest() was acknowledged at uptime second now_s, sent with ts_ms: a copy sent
        # again carries the same ts, though its own was -1.
        if not self.count:
            return
        self.count -= 1
        if self.again:
            self.again -= 1
        if not self.keep_s:
            self.first = self._slot(1)
            return
        slot = self._slot(self.kept)
        struct.pack_into("<q", self.buf, slot * self.size + 12, ts_ms)
        struct.pack_into("<I", self.acked_s, 4 * slot, now_s)
        self.kept += 1

    def resend(self, now_s):
        # After a (re)connect: copies acknowledged within keep_s wait again, oldest first,
        # in front of the rest; older ones are forgotten. Acknowledged in ring order, the
        # copies are oldest first by PUBACK too, so the old ones are all at the front.
        while self.kept and now_s - struct.unpack_from(
                "<I", self.acked_s, 4 * self.first)[0] > self.keep_s:
            self.first = self._slot(1)
            self.kept -= 1
        self.again += self.kept
        self.count += self.kept
        self.kept = 0

    def to_bytes(self):
        # The waiting records oldest first, for RTC memory.
        out = bytearray(self.count * self.size)
        for i in range(self.count):
            at = self._slot(self.kept + i) * self.size
            out[i * self.size:(i + 1) * self.size] = self.buf[at:at + self.size]
        return out

    def load(self, data):
        # Records from to_bytes(); ones beyond capacity (a smaller buffer_max since) are
        # dropped oldest first and counted.
        n = len(data) // self.size
        skip = max(0, n - self.capacity)
        self.dropped += skip
        self.first = self.kept = self.again = 0
        self.count = n - skip
        self.buf[:self.count * self.size] = data[skip * self.size:n * self.size]
