# Runs under the MicroPython unix port, with a heap as small as an ESP8266's: the heap
# after 10,000 readings is no larger than after 100, and what one reading allocates.
import gc
import sys

import node
from check import check, config, done


class Discard:
    # An in-memory writer that keeps nothing but a byte count, like a UART would.
    def __init__(self):
        self.bytes = 0

    def write(self, text):
        self.bytes += len(text)


def used_after_collect():
    gc.collect()
    return gc.mem_alloc()


sensors = [{"type": "sim"}, {"type": "sim", "seed": 3, "prefix": "out_", "fail_every": 50}]
out = Discard()
n = node.Node(config(sensors=sensors), out.write, "0a1b2c3d")
n.hello()
for _ in range(100):
    n.sample()
after_100 = used_after_collect()
for _ in range(10000 - 100):
    n.sample()
after_10000 = used_after_collect()

gc.collect()
gc.disable()  # so that nothing is collected while counting what the readings allocate
before = gc.mem_alloc()
for _ in range(10):
    n.sample()
per_reading = (gc.mem_alloc() - before) // 10
gc.enable()
n.handle('{"id":"i","cmd":"info"}')  # the first command interns its keys as qstrs
after_one_command = used_after_collect()
for i in range(100):
    n.handle('{"id":"i","cmd":"info"}')
    n.handle('{"id":"r","cmd":"read"}')
    n.handle("not json")
after_commands = used_after_collect()

print("heap in use after 100 readings: %d bytes" % after_100)
print("heap in use after 10000 readings: %d bytes" % after_10000)
print("allocated per reading (2 sensors, 4 metrics): %d bytes" % per_reading)
print("bytes written per reading: %d" % (out.bytes // n.seq))
print("heap size %d, free %d" % (gc.mem_free() + gc.mem_alloc(), gc.mem_free()))
check("10,000 readings were written", n.seq >= 10110, n.seq)
check("the heap does not grow from 100 to 10,000 readings", after_10000 <= after_100,
      (after_100, after_10000))
check("commands do not leave garbage behind", after_commands <= after_one_command,
      (after_one_command, after_commands))
# Short-lived strings of the numbers and (64-bit unix port only) boxed floats.
check("a reading allocates under 1 KB", per_reading < 1024, per_reading)
done()
