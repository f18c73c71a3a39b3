# DHT11 / DHT22 (AM2302) through MicroPython's built-in `dht` module (driver interface:
# sensors.py).
import time
from micropython import const

import dht
import machine

_DHT22_PERIOD_MS = const(2000)  # the DHT22 measures at most every 2 s, the DHT11 every 1 s
_DHT11_PERIOD_MS = const(1000)


class DHT:
    base = (("temperature", "°C", 1), ("humidity", "%", 1))

    def __init__(self, spec):
        self.kind = spec["type"]
        model = dht.DHT11 if self.kind == "dht11" else dht.DHT22
        self._period = _DHT11_PERIOD_MS if self.kind == "dht11" else _DHT22_PERIOD_MS
        self._sensor = model(machine.Pin(spec["pin"]))
        self._last = None  # ticks_ms of the last good measure()

    def read_into(self, values, i):
        # Asked again within its period the sensor only repeats itself (or times out),
        # so a short interval reuses the last good measurement.
        now = time.ticks_ms()
        if self._last is None or time.ticks_diff(now, self._last) >= self._period:
            self._sensor.measure()  # OSError on timeout, or a checksum error
            self._last = now
        values[i] = self._sensor.temperature()
        values[i + 1] = self._sensor.humidity()
