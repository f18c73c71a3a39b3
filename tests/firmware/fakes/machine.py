# Stands in, for the 32-bit memory tier, for what the firmware uses of an ESP8266's
# built-in `machine` (the unix port's lacks Pin): a Pin is only a number here.


class Pin:
    IN = 0
    PULL_UP = 1

    def __init__(self, pin, mode=-1, pull=-1):
        self.pin = pin

    def value(self):
        return 1


def unique_id():
    return b"\x00\x32\xbe\xef"
