# The board's main loop: sample every interval, answer commands from stdin in between.
# Nothing here may end the program: a failed read is an error line, a bad command an
# error answer. Ctrl-C (KeyboardInterrupt) is let through so a user gets the REPL back.
import gc
import select
import sys
import time

import board
import sensors
import wire

FIRMWARE_VERSION = "0.1.0"
MAX_COMMAND = 256
MIN_INTERVAL_MS = 1
MAX_INTERVAL_MS = 86400000


class Uptime:
    # time.ticks_ms() wraps (after ~12 days on some ports); this keeps a running total.
    def __init__(self):
        self._last = time.ticks_ms()
        self.ms = 0

    def now(self):
        t = time.ticks_ms()
        self.ms += time.ticks_diff(t, self._last)
        self._last = t
        return self.ms


class Node:
    def __init__(self, config, write, boot):
        self.config = config
        self.interval_ms = config["interval_ms"]
        self.sensors = []
        self.failed = []  # (spec type, reason) of sensors that could not be set up
        for spec in config["sensors"]:
            try:
                self.sensors.append(sensors.build(spec))
            except Exception as e:  # a missing module or wrong pin must not stop the rest
                self.failed.append((str(spec.get("type")), repr(e)))
        self.metrics = [m for s in self.sensors for m in s.metrics]
        self.values = [None] * len(self.metrics)
        self.uptime = Uptime()
        self.seq = 0
        self.boot = boot
        self.out = wire.Encoder(write, config["device_id"], boot, self.metrics)
        self.commands = {"ping": self.cmd_ping, "read": self.cmd_read,
                         "info": self.cmd_info, "set": self.cmd_set}

    def hello(self):
        up = self.uptime.now()
        self.out.hello(up, FIRMWARE_VERSION, self.config["board"],
                       [s.name for s in self.sensors], self.metrics, self.interval_ms)
        for name, reason in self.failed:
            self.out.error(up, name, "sensor not available: " + reason)

    def sample(self):
        # One reading of every sensor; the line carries the metrics that succeeded.
        values = self.values
        i = 0
        ok = False
        for sensor in self.sensors:
            n = len(sensor.metrics)
            try:
                got = sensor.read()
                for j in range(n):
                    values[i + j] = got[j]
                ok = True
            except Exception as e:
                for j in range(n):
                    values[i + j] = None
                self.out.error(self.uptime.now(), sensor.name, repr(e))
            i += n
        if not ok:
            return None
        seq = self.seq
        self.seq += 1
        self.out.reading(seq, self.uptime.now(), values)
        return seq

    def handle(self, text):
        command_id, cmd, args, error = wire.decode_command(text)
        if error is None:
            handler = self.commands.get(cmd)
            if handler is None:
                error = "unknown command %r; known: %s" % (cmd, ", ".join(sorted(self.commands)))
            else:
                try:
                    result = handler(args)
                except ValueError as e:
                    error = str(e)
                except Exception as e:  # a bug in a handler is an answer, not a crash
                    error = "command failed: " + repr(e)
        if error is None:
            self.out.answer(command_id, True, result)
        else:
            self.out.answer(command_id, False, error)

    def cmd_ping(self, args):
        return {"uptime_ms": self.uptime.now()}

    def cmd_read(self, args):
        seq = self.sample()
        if seq is None:
            raise ValueError("every sensor failed; see the error lines")
        metrics = {}
        for i in range(len(self.metrics)):
            if self.values[i] is not None:
                metrics[self.metrics[i][0]] = round(self.values[i], self.metrics[i][2])
        return {"seq": seq, "metrics": metrics}

    def cmd_info(self, args):
        gc.collect()
        return {
            "fw": FIRMWARE_VERSION,
            "board": self.config["board"],
            "device": self.config["device_id"],
            "boot": self.boot,
            "sensors": [s.name for s in self.sensors],
            "units": dict([(m[0], m[1]) for m in self.metrics]),
            "interval_ms": self.interval_ms,
            "mem_free": gc.mem_free(),
            "uptime_ms": self.uptime.now(),
        }

    def cmd_set(self, args):
        if "interval_ms" not in args:
            raise ValueError("set needs args.interval_ms")
        value = args["interval_ms"]
        if not isinstance(value, int) or not MIN_INTERVAL_MS <= value <= MAX_INTERVAL_MS:
            raise ValueError("interval_ms must be a whole number from %d to %d"
                             % (MIN_INTERVAL_MS, MAX_INTERVAL_MS))
        self.interval_ms = value
        return {"interval_ms": value}


TOO_LONG = object()
NOT_TEXT = object()


class LineReader:
    # Collects command bytes from stdin without ever blocking the sampling loop.
    def __init__(self, stream):
        self.stream = stream
        self.buf = bytearray(MAX_COMMAND)
        self.n = 0
        self.overflow = False

    def feed(self):
        # Called when poll says stdin is readable: returns a complete line or None.
        ch = self.stream.read(1)
        if not ch:
            raise EOFError  # the host end is gone (only on the unix port)
        if isinstance(ch, str):
            ch = ch.encode()
        b = ch[0]
        if b == 10:  # newline
            data = bytes(self.buf[: self.n])
            overflow = self.overflow
            self.n = 0
            self.overflow = False
            if overflow:
                return TOO_LONG
            try:
                return data.decode() or None
            except UnicodeError:
                return NOT_TEXT
        if b == 13:
            return None
        if self.n < MAX_COMMAND:
            self.buf[self.n] = b
            self.n += 1
        else:
            self.overflow = True  # answered as malformed once the newline arrives
        return None


def run(node, stdin, poll_ms_max=1000):
    poller = select.poll()
    poller.register(stdin, select.POLLIN)
    reader = LineReader(getattr(stdin, "buffer", stdin))
    node.hello()
    due = time.ticks_ms()
    while True:
        wait = time.ticks_diff(due, time.ticks_ms())
        if wait <= 0:
            node.sample()
            due = time.ticks_add(due, node.interval_ms)
            if time.ticks_diff(due, time.ticks_ms()) < 0:
                due = time.ticks_ms()  # fell behind (slow sensor): skip, don't burst
            continue
        for _ in poller.poll(min(wait, poll_ms_max)):
            try:
                line = reader.feed()
            except EOFError:  # nobody will send commands again; keep sampling
                poller.unregister(stdin)
                break
            if line is TOO_LONG:
                node.out.answer(None, False, "malformed command: over %d bytes" % MAX_COMMAND)
            elif line is NOT_TEXT:
                node.out.answer(None, False, "malformed command: not UTF-8")
            elif line is not None:
                node.handle(line)


def main():
    config = board.load_config()
    out = sys.stdout
    node = Node(config, out.write, board.boot_id())
    run(node, sys.stdin)
