# The MCU's own temperature sensor, where the port has one (driver interface:
# sensors.py).
import sys


class InternalTemperature:
    # The MCU's own temperature sensor: a hint of enclosure heat, not room temperature.
    kind = "mcu"
    base = (("mcu_temperature", "°C", 1),)

    def __init__(self, spec):
        if sys.platform == "esp32":
            import esp32

            self._adc = None
            if hasattr(esp32, "mcu_temperature"):  # S2, S3, C3, C6: in degrees Celsius
                self._celsius = esp32.mcu_temperature
            elif hasattr(esp32, "raw_temperature"):  # the original ESP32: Fahrenheit
                self._celsius = lambda: (esp32.raw_temperature() - 32) / 1.8
            else:
                raise OSError("this ESP32 variant has no temperature sensor function")
        elif sys.platform == "rp2":
            import machine

            self._adc = machine.ADC(4)
        else:
            raise OSError("this port has no internal temperature sensor")

    def read_into(self, values, i):
        if self._adc is None:
            values[i] = self._celsius()
        else:
            volts = self._adc.read_u16() * 3.3 / 65535
            values[i] = 27 - (volts - 0.706) / 0.001721  # RP2040 datasheet, 4.9.5
