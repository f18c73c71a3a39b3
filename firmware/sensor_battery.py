# The battery voltage through a divider on an ADC pin, for the config's battery_adc
# (driver interface: sensors.py). ratio is (R1 + R2) / R2 of the divider: a LiPo's 4.2 V
# through 100k/100k is 2.1 V at the pin, ratio 2.
import sys

# Volts at full scale of read_u16() where the port has no calibrated read_uv(): the
# ESP8266's ADC reads 0-1.0 V, the RP2040's 0-3.3 V.
FULL_SCALE = {"esp8266": 1.0, "rp2": 3.3}


class Battery:
    kind = "battery"
    base = (("battery", "V", 2),)

    def __init__(self, spec):
        import machine

        ratio = spec.get("ratio")
        if not isinstance(ratio, (int, float)) or ratio <= 0:
            raise ValueError("battery needs a ratio > 0")
        self._ratio = ratio
        pin = spec.get("pin")
        if sys.platform == "esp32":
            self._adc = machine.ADC(machine.Pin(pin), atten=machine.ADC.ATTN_11DB)
        elif sys.platform in FULL_SCALE:
            self._adc = machine.ADC(pin)
        else:
            raise OSError("this port has no ADC")
        self._full = FULL_SCALE.get(sys.platform, 0)

    def read_into(self, values, i):
        if hasattr(self._adc, "read_uv"):  # calibrated (ESP32): better than the scale
            volts = self._adc.read_uv() / 1000000
        else:
            volts = self._adc.read_u16() * self._full / 65535
        values[i] = volts * self._ratio
