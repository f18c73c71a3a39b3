# Runs under the MicroPython unix port, with a heap as small as an ESP8266's: the serial
# firmware with its ring of recent readings full, over 10,000 readings; the heap after
# them is no larger than after the first 100 past a full ring, what one reading
# allocates, the lowest free heap seen, and commands (replay among them) leave nothing.
#   micropython -X heapsize=38K run_memory.py [sensors] [ring_max] [readings]
# sensors: "sim" (two simulated sensors, one failing every 50th read) or "esp8266" (a
# DHT22 and a DS18B20 on their drivers, over the fake dht/onewire/ds18x20 of
# tests/firmware/fakes, the DS18B20 failing every 50th read).
import gc
import sys

gc.collect()
at_start = gc.mem_alloc()

import node  # noqa: E402
from check import check, config, done  # noqa: E402

SENSORS = {
    "sim": [{"type": "sim"}, {"type": "sim", "seed": 3, "prefix": "out_", "fail_every": 50}],
    # conversion_ms 0: the fake converts at once, and 10,000 readings take seconds, not hours
    "esp8266": [{"type": "dht22", "pin": 4}, {"type": "ds18b20", "pin": 5, "name": "soil",
                                              "prefix": "soil_", "conversion_ms": 0}],
}
kind = sys.argv[1] if len(sys.argv) > 1 else "sim"
ring_max = int(sys.argv[2]) if len(sys.argv) > 2 else 100
total = int(sys.argv[3]) if len(sys.argv) > 3 else 10000


class Discard:
    # An in-memory writer that keeps nothing but a byte count, like a UART would.
    def __init__(self):
        self.bytes = 0

    def write(self, text):
        self.bytes += len(text)


def used_after_collect():
    gc.collect()
    return gc.mem_alloc()


low = [gc.mem_free()]


def sample(times):
    # The free heap between readings, after a collection: what the firmware holds live at
    # that moment. Its lowest, less what one reading allocates, is the lowest free heap.
    for _ in range(times):
        gc.collect()
        free = gc.mem_free()
        if free < low[0]:
            low[0] = free
        n.sample()


out = Discard()
n = node.Node(config(sensors=SENSORS[kind], ring_max=ring_max), out.write, "0a1b2c3d")
n.hello()
gc.collect()
code_and_state = gc.mem_alloc() - at_start
sample(ring_max + 100)
after_full = used_after_collect()
sample(total - ring_max - 100)
after_total = used_after_collect()

gc.collect()
gc.disable()  # so that nothing is collected while counting what the readings allocate
before = gc.mem_alloc()
for _ in range(10):
    n.sample()
per_reading = (gc.mem_alloc() - before) // 10
gc.enable()


def replay(after):
    n.handle('{"id":"p","cmd":"replay","args":{"boot":"0a1b2c3d","after":%d}}' % after)
    while n.replaying is not None:
        n.replay_step()


def commands():
    n.handle('{"id":"i","cmd":"info"}')
    n.handle('{"id":"r","cmd":"read"}')
    n.handle("not json")
    replay(n.seq - 10)


commands()  # the first commands intern their keys as qstrs
after_one_round = used_after_collect()
for i in range(100):
    commands()
after_commands = used_after_collect()
written = out.bytes
replay(-1)  # the whole ring, beyond it missing
replay_bytes = out.bytes - written

ring = n.out.ring
print("heap size %d bytes, ring of %d readings (%d bytes each)" % (
    gc.mem_free() + gc.mem_alloc(), ring.capacity, ring.size))
print("heap the firmware keeps after start (modules, node, ring): %d bytes" % code_and_state)
print("heap in use with the ring full, and after %d readings: %d and %d bytes" % (
    n.seq, after_full, after_total))
lowest = low[0] - per_reading
print("lowest free heap over %d readings: %d bytes (%d between readings, less one reading's "
      "allocation)" % (total, lowest, low[0]))
print("allocated per reading (%s sensors, %d metrics): %d bytes" % (
    kind, len(n.metrics), per_reading))
print("bytes written per reading: %d" % (written // n.seq))
print("heap after 1 and after 101 rounds of commands (info, read, bad, replay): %d, %d" % (
    after_one_round, after_commands))
check("%d readings were written" % total, n.seq >= total, n.seq)
check("the ring is full", ring.count == ring.capacity, (ring.count, ring.capacity))
check("the heap does not grow with the ring full over %d readings" % total,
      after_total <= after_full, (after_full, after_total))
check("commands and replays leave no garbage behind", after_commands <= after_one_round,
      (after_one_round, after_commands))
check("a replay of the whole ring writes every reading it holds",
      replay_bytes > ring.capacity * 40, replay_bytes)
# Short-lived strings of the numbers, and boxed floats (the unix ports, ESP32; not ESP8266).
check("a reading allocates under 1.5 KB", per_reading < 1536, per_reading)
done()
