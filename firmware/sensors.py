# Sensor drivers behind one small interface:
#   name      short text for hello/error lines
#   metrics   tuple of (metric, unit, decimals), the order of read()'s values
#   read()    -> tuple of values; raises OSError (or ValueError) on a failed read
# A driver imports its hardware module only when it is built, so the unix port never
# needs `dht` or `onewire`, and a board without them fails with a clear reason.


class Simulated:
    # A seeded random walk, for the unix port and the virtual board: the same seed gives
    # the same series, so tests can predict it.
    name = "sim"
    metrics = (("temperature", "°C", 2), ("humidity", "%", 1))

    def __init__(self, seed=1):
        self._state = (seed * 2654435761) & 0x7FFFFFFF or 1
        self._temperature = 21.0
        self._humidity = 45.0

    def _step(self):
        # xorshift32: cheap, deterministic, allocation-free (small ints).
        x = self._state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._state = x
        return ((x & 0xFFFF) / 32768.0) - 1.0  # in [-1, 1)

    def read(self):
        self._temperature = min(40.0, max(0.0, self._temperature + 0.05 * self._step()))
        self._humidity = min(100.0, max(0.0, self._humidity + 0.2 * self._step()))
        return (self._temperature, self._humidity)


class DHT:
    # DHT11 / DHT22 (AM2302) through MicroPython's built-in `dht` module.
    metrics = (("temperature", "°C", 1), ("humidity", "%", 1))

    def __init__(self, pin, model="dht22"):
        import dht
        import machine

        self.name = model
        kind = dht.DHT11 if model == "dht11" else dht.DHT22
        self._sensor = kind(machine.Pin(pin))

    def read(self):
        self._sensor.measure()  # OSError on timeout or bad checksum
        return (self._sensor.temperature(), self._sensor.humidity())


class DS18B20:
    # One DS18B20 on a 1-Wire bus (onewire + ds18x20, built into most ports).
    name = "ds18b20"
    metrics = (("temperature", "°C", 2),)
    POWER_ON_VALUE = 85.0

    def __init__(self, pin):
        import ds18x20
        import onewire
        import machine

        self._bus = ds18x20.DS18X20(onewire.OneWire(machine.Pin(pin)))
        self._rom = None

    def read(self):
        import time

        if self._rom is None:
            roms = self._bus.scan()
            if not roms:
                raise OSError("no DS18B20 answers on the 1-Wire bus")
            self._rom = roms[0]
        self._bus.convert_temp()
        time.sleep_ms(750)
        value = self._bus.read_temp(self._rom)  # raises on CRC error
        if value == self.POWER_ON_VALUE:
            # The power-on reset value: the conversion did not happen (loose VDD wire).
            raise ValueError("DS18B20 answered 85.0 C, its power-on value")
        return (value,)


class InternalTemperature:
    # The MCU's own temperature sensor: a hint of enclosure heat, not room temperature.
    name = "mcu"
    metrics = (("mcu_temperature", "°C", 1),)

    def __init__(self):
        import sys

        self._read = None
        if sys.platform == "esp32":
            import esp32

            self._read = lambda: (esp32.raw_temperature() - 32) / 1.8  # reported in °F
        elif sys.platform == "rp2":
            import machine

            adc = machine.ADC(4)
            self._read = lambda: 27 - (adc.read_u16() * 3.3 / 65535 - 0.706) / 0.001721
        else:
            raise OSError("this port has no internal temperature sensor")

    def read(self):
        return (self._read(),)


def build(spec):
    kind = spec.get("type")
    if kind == "sim":
        return Simulated(spec.get("seed", 1))
    if kind in ("dht11", "dht22"):
        return DHT(spec["pin"], kind)
    if kind == "ds18b20":
        return DS18B20(spec["pin"])
    if kind == "mcu":
        return InternalTemperature()
    raise ValueError("unknown sensor type %r" % (kind,))
