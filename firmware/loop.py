# The main loop: sample at every interval, feed the watchdog, and read command bytes
# from stdin in between without ever blocking the sampling (select.poll).
# Ctrl-C (KeyboardInterrupt) is let through so a user gets the REPL back.
import select
import sys
import time
from micropython import const

import board
import node

MAX_COMMAND = const(256)
MAX_WAIT_MS = const(1000)  # the watchdog is fed at least this often
TOO_LONG = object()
NOT_TEXT = object()


class LineReader:
    # Collects one command line in a buffer allocated once.
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
        b = ord(ch) if isinstance(ch, str) else ch[0]
        if b == 10:  # newline
            n, overflow = self.n, self.overflow
            self.n = 0
            self.overflow = False
            if overflow:
                return TOO_LONG
            if n == 0:
                return None
            try:
                return bytes(self.buf[:n]).decode()
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


def _command(node_, reader):
    line = reader.feed()
    if line is TOO_LONG:
        node_.out.answer(None, False, "malformed command: over %d bytes" % MAX_COMMAND)
    elif line is NOT_TEXT:
        node_.out.answer(None, False, "malformed command: not UTF-8")
    elif line is not None:
        node_.handle(line)


def run(node_, stdin, wdt=None, max_wait_ms=MAX_WAIT_MS, readings=-1):
    # readings >= 0 stops after that many (for tests); a board runs until reset.
    wdt = wdt or board.NoWatchdog()
    poller = select.poll()
    poller.register(stdin, select.POLLIN)
    reader = LineReader(getattr(stdin, "buffer", stdin))
    node_.hello()
    due = time.ticks_ms()
    while readings != 0:
        wdt.feed()
        node_.uptime.now()
        if node_.reset_pending:
            time.sleep_ms(50)  # let the answer leave the UART first
            board.reset()
        wait = time.ticks_diff(due, time.ticks_ms())
        if wait <= 0:
            node_.sample()
            readings -= 1
            due = time.ticks_add(due, node_.interval_ms)
            if time.ticks_diff(due, time.ticks_ms()) < 0:
                due = time.ticks_ms()  # fell behind (slow sensor): skip, don't burst
            continue
        if node_.replaying is not None:  # a few lines per turn, commands and samples between
            node_.replay_step()
            wait = 0
        for _ in poller.poll(min(wait, max_wait_ms)):
            try:
                _command(node_, reader)
            except EOFError:  # nobody will send commands again; keep sampling
                poller.unregister(stdin)
                break


def main(config=None, problems=()):
    if config is None:
        import boardconfig

        config, problems = boardconfig.load_config()
        board.forget("boardconfig", "netconfig")
    if config["transport"] == "mqtt":  # Wi-Fi straight to the broker: netloop.py
        import netloop

        netloop.main(config, problems)
        return
    out = sys.stdout
    n = node.Node(config, out.write, board.boot_id(), problems)
    run(n, sys.stdin, board.watchdog(config["wdt_ms"]))
