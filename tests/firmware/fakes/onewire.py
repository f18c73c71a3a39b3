# A 1-Wire bus without the wire, behind the interface of MicroPython's `onewire`
# module as ds18x20 uses it: OneWire(pin), scan() the ROMs of what answers.


class OneWire:
    def __init__(self, pin):
        self.pin = pin

    def scan(self):
        return [bytearray(b"\x28\xff\x64\x1e\x0f\x00\x00\xa1")]
