# A DHT22 without the wire, behind the interface of MicroPython's `dht` module:
# DHT22(pin), measure() (OSError on a timeout), temperature(), humidity(). Like the real
# driver it keeps the sensor's five bytes in one buffer and computes from them.
FAIL_EVERY = 0  # a test may make every n-th measure() time out


class DHT22:
    def __init__(self, pin):
        self.pin = pin
        self.buf = bytearray(5)
        self.n = 0

    def measure(self):
        self.n += 1
        if FAIL_EVERY and self.n % FAIL_EVERY == 0:
            raise OSError(110)  # ETIMEDOUT, as the real one raises
        humidity = 400 + self.n % 200  # tenths of %
        temperature = 215 + self.n % 50  # tenths of a degree
        b = self.buf
        b[0], b[1], b[2], b[3] = humidity >> 8, humidity & 0xFF, temperature >> 8, temperature & 0xFF
        b[4] = (b[0] + b[1] + b[2] + b[3]) & 0xFF

    def humidity(self):
        return (self.buf[0] << 8 | self.buf[1]) * 0.1

    def temperature(self):
        t = ((self.buf[2] & 0x7F) << 8 | self.buf[3]) * 0.1
        return -t if self.buf[2] & 0x80 else t


DHT11 = DHT22
