# The serial board's most recent readings, kept so that a host that missed some (a
# bridge restarted, a cable pulled, a port left unread) can ask for them again with the
# `replay` command (docs/protocol.md). Like backlog.py: fixed-size packed records in one
# bytearray allocated at boot, the oldest overwritten when it is full.
#
# A record is the reading's uptime_ms and one int32 per metric: the value as written on
# the line, in units of its last decimal (21.37 with 2 decimals is 2137; MISSING: that
# sensor failed). The line is rendered from these integers both the first time and at a
# replay (wire.Encoder.line), so a replayed line is byte for byte the original. Seqs in the
# ring have no gaps, so a record's seq is first + its place and is not stored.
import struct
from micropython import const

MISSING = const(-2147483648)
UPTIME_SIZE = const(8)
REPLAY_BATCH = const(4)  # lines per loop turn: sampling never waits long for a replay


class Ring:
    def __init__(self, capacity, n_metrics):
        self.capacity = capacity
        self.n_metrics = n_metrics
        self.size = UPTIME_SIZE + 4 * n_metrics
        self.buf = bytearray(capacity * self.size)
        self.start = 0  # slot of the oldest record
        self.count = 0
        self.first = 0  # seq of the oldest record (of the next one when empty)

    def end(self):
        # The seq after the newest record held.
        return self.first + self.count

    def push(self, seq, uptime_ms, q):
        # q: the quantized values (MISSING for a failed sensor); seq follows the last one.
        if not self.capacity:
            self.first = seq + 1
            return
        if seq != self.first + self.count:  # not the next seq: what is held is not before it
            self.start, self.count, self.first = 0, 0, seq
        if self.count == self.capacity:
            self.start = (self.start + 1) % self.capacity
            self.count -= 1
            self.first += 1
        at = (self.start + self.count) % self.capacity * self.size
        struct.pack_into("<q", self.buf, at, uptime_ms)
        at += UPTIME_SIZE
        for v in q:
            struct.pack_into("<i", self.buf, at, v)
            at += 4
        self.count += 1

    def read(self, seq, q):
        # The record of seq (held: first <= seq < end()) into q; -> its uptime_ms.
        at = (self.start + seq - self.first) % self.capacity * self.size
        uptime_ms = struct.unpack_from("<q", self.buf, at)[0]
        at += UPTIME_SIZE
        for i in range(self.n_metrics):
            q[i] = struct.unpack_from("<i", self.buf, at + 4 * i)[0]
        return uptime_ms


class Replay:
    # One `replay` command in progress: step() writes up to REPLAY_BATCH of the held
    # readings from seq `start` to `stop` (excluded: the next seq when it was asked), and
    # once through, the answer. Readings overwritten meanwhile are counted as missing.
    def __init__(self, out, command_id, boot, start, stop):
        self.out = out
        self.command_id = command_id
        self.boot = boot
        self.next = start
        self.stop = stop
        self.wanted = stop - start
        self.sent = 0
        self.first = None

    def step(self):
        # -> True once the answer is written.
        ring = self.out.ring
        for _ in range(REPLAY_BATCH):
            if self.next < ring.first:  # gone before it was its turn
                self.next = min(ring.first, self.stop)
            if self.next >= self.stop:
                break
            self.out.replay(self.next)
            if self.first is None:
                self.first = self.next
            self.sent += 1
            self.next += 1
        if self.next < self.stop:
            return False
        self.out.replayed(self.command_id, self.boot, self.sent, self.first,
                          self.wanted - self.sent)
        return True


def plan(ring, args, current_boot):
    # The seqs a `replay` asks for -> (start, stop); raises ValueError for bad args.
    # Another boot's seqs (or none named): all of this boot's, from 0.
    for key in args:
        if key not in ("boot", "after"):
            raise ValueError("replay knows boot and after, not %r" % (key,))
    after = args.get("after", -1)
    if not isinstance(after, int) or isinstance(after, bool) or after < -1:
        raise ValueError("replay's after must be a whole number >= -1 (the last seq you have)")
    stop = ring.end()
    if args.get("boot") != current_boot:
        return 0, stop
    return min(after + 1, stop), stop
