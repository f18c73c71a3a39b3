# DS18B20 on a 1-Wire bus through the built-in onewire and ds18x20 modules (driver
# interface: sensors.py).
import time
from micropython import const

import ds18x20
import machine
import onewire

_CONVERSION_MS = const(750)  # at the default 12-bit resolution


class DS18B20:
    # One DS18B20 on a 1-Wire bus (onewire + ds18x20, built into most ports). The
    # conversion runs between readings instead of blocking 750 ms: each read takes the
    # result of the conversion started by the previous one and starts the next.
    kind = "ds18b20"
    base = (("temperature", "°C", 2),)
    POWER_ON_VALUE = 85.0

    def __init__(self, spec):
        self._bus = ds18x20.DS18X20(onewire.OneWire(machine.Pin(spec["pin"])))
        rom = spec.get("rom")  # 16 hex digits, to pick one of several on the bus
        self._rom = bytes.fromhex(rom) if rom else None
        self._started = None
        # A sensor set to a lower resolution converts faster (9 bits: 94 ms).
        self._conversion_ms = spec.get("conversion_ms", _CONVERSION_MS)

    def _start(self):
        self._bus.convert_temp()
        self._started = time.ticks_ms()

    def read_into(self, values, i):
        if self._rom is None:
            roms = self._bus.scan()
            if not roms:
                raise OSError(19)  # ENODEV: nothing answers on the bus
            self._rom = roms[0]
        if self._started is None:
            self._start()
        left = self._conversion_ms - time.ticks_diff(time.ticks_ms(), self._started)
        if left > 0:
            time.sleep_ms(left)  # only when the interval is shorter than a conversion
        self._started = None  # after a failed read, the next one converts afresh
        value = self._bus.read_temp(self._rom)  # raises on a CRC error
        self._start()
        if value == self.POWER_ON_VALUE:
            # The power-on reset value: the conversion did not happen (loose VDD wire).
            raise ValueError("DS18B20 answered 85.0 C, its power-on value")
        values[i] = value
