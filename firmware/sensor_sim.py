# The simulated sensor of the unix port and the virtual board (driver interface:
# sensors.py).


class Simulated:
    # A seeded random walk, for the unix port and the virtual board: the same seed gives
    # the same series, so tests can predict it.
    kind = "sim"
    base = (("temperature", "°C", 2), ("humidity", "%", 1))

    def __init__(self, spec):
        self._state = (spec.get("seed", 1) * 2654435761) & 0xFFFF or 1
        self._temperature = 21.0
        self._humidity = 45.0
        self._fail_every = spec.get("fail_every", 0)  # for tests: every n-th read fails
        self._reads = 0

    def _step(self):
        # xorshift16 (7, 9, 8): cheap, deterministic, and its state a small int on every
        # port (a 32-bit state is a heap-allocated long on a 32-bit build, whose size then
        # comes and goes with the state and looks like a leak in the heap tests).
        x = self._state
        x ^= (x << 7) & 0xFFFF
        x ^= x >> 9
        x ^= (x << 8) & 0xFFFF
        self._state = x
        return (x / 32768.0) - 1.0  # in [-1, 1)

    def read_into(self, values, i):
        self._reads += 1
        if self._fail_every and self._reads % self._fail_every == 0:
            raise OSError(110)
        self._temperature = min(40.0, max(0.0, self._temperature + 0.05 * self._step()))
        self._humidity = min(100.0, max(0.0, self._humidity + 0.2 * self._step()))
        values[i] = self._temperature
        values[i + 1] = self._humidity


class Failing:
    # For tests: a sensor whose every read raises, as a disconnected one does.
    kind = "failing"
    base = (("broken", "", 0),)

    def __init__(self, spec):
        pass

    def read_into(self, values, i):
        raise OSError(110)
