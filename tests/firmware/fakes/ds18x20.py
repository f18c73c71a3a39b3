# A DS18B20 without the wire, behind the interface of MicroPython's `ds18x20` module:
# DS18X20(onewire), scan(), convert_temp(), read_temp(rom). Like the real driver it
# reads the nine scratchpad bytes into one buffer, checks their CRC (raising
# Exception("CRC error") as it does) and computes the temperature from them.
FAIL_EVERY = 50  # every n-th read has a bad CRC, as a long or noisy bus gives


def _crc8(data):
    crc = 0
    for byte in data:
        for _ in range(8):
            mix = (crc ^ byte) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            byte >>= 1
    return crc


class DS18X20:
    def __init__(self, onewire):
        self.ow = onewire
        self.buf = bytearray(9)
        self.n = 0

    def scan(self):
        return [rom for rom in self.ow.scan() if rom[0] in (0x10, 0x22, 0x28)]

    def convert_temp(self):
        pass

    def read_scratch(self, rom):
        self.n += 1
        raw = 232 + self.n % 40  # 1/16 degree: 14.5 C and up
        b = self.buf
        b[0], b[1], b[2], b[3], b[4] = raw & 0xFF, raw >> 8, 0x4B, 0x46, 0x7F
        b[5], b[6], b[7] = 0xFF, 0x0C, 0x10
        b[8] = _crc8(memoryview(b)[:8])
        if FAIL_EVERY and self.n % FAIL_EVERY == 0:
            b[8] ^= 1
        if _crc8(b):
            raise Exception("CRC error")
        return b

    def read_temp(self, rom):
        buf = self.read_scratch(rom)
        t = buf[1] << 8 | buf[0]
        if t & 0x8000:
            t = -((t ^ 0xFFFF) + 1)
        return t / 16
