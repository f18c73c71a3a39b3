# What the board does: sample every sensor into one reading, and answer commands.
# Nothing here may end the program: a failed read is an error line, a bad command an
# error answer. The loop that drives it is loop.py.
import gc
import time

import board
import wire

FIRMWARE_VERSION = "0.2.0"


ERRNO_NAMES = {110: "ETIMEDOUT", 116: "ETIMEDOUT", 5: "EIO", 19: "ENODEV", 12: "ENOMEM"}


def reason(e):
    # A short text for an error line: "OSError ETIMEDOUT" rather than "OSError(110,)".
    name = type(e).__name__
    if isinstance(e, OSError) and e.args and isinstance(e.args[0], int):
        return name + " " + ERRNO_NAMES.get(e.args[0], str(e.args[0]))
    text = str(e)
    return name + ": " + text if text else name


class Uptime:
    # time.ticks_ms() wraps (after ~12 days on some ports); this keeps a running total,
    # correct as long as now() is called more often than every few days (each loop is).
    def __init__(self):
        self._last = time.ticks_ms()
        self.ms = 0

    def now(self):
        t = time.ticks_ms()
        self.ms += time.ticks_diff(t, self._last)
        self._last = t
        return self.ms


class Node:
    # out: what the node reports through — reading, hello, error, answer. By default the
    # serial line encoder over write; a board on MQTT passes make_out(device, boot, metrics)
    # (uplink.Outbox), write None, and specs: its sensors with the battery (netloop.py).
    def __init__(self, config, write, boot, problems=(), make_out=None, specs=None):
        self.config = config
        self.interval_ms = config["interval_ms"]
        self.uptime = Uptime()
        self.sensors = []
        self.failed = [("config", p) for p in problems]  # (sensor name, reason)
        import sensors  # only to set them up: unloaded below

        taken = []
        for spec in specs or config["sensors"]:
            try:
                self.sensors.append(sensors.build(spec, taken))
            except Exception as e:  # a missing module or wrong pin must not stop the rest
                name = spec.get("name") or spec.get("type") if isinstance(spec, dict) else None
                self.failed.append((str(name), "not available: " + reason(e)))
        del sensors
        board.forget("sensors")
        self.metrics = [m for s in self.sensors for m in s.metrics]
        self.values = [None] * len(self.metrics)  # reused by every reading
        self.seq = 0
        self.read_errors = 0
        self.boot = boot
        self.reset_pending = False
        self.replaying = None  # a ring.Replay while a `replay` command is answered
        if make_out is None:
            import ring  # only the serial transport replays (a board on Wi-Fi has its backlog)

            capacity = config.get("ring_max", 100)  # boardconfig.RING
            self.out = wire.Encoder(write, config["device_id"], boot, self.metrics,
                                    ring.Ring(capacity, len(self.metrics)))
        else:
            self.out = make_out(config["device_id"], boot, self.metrics)
        self.commands = {
            "ping": self.cmd_ping,
            "read": self.cmd_read,
            "info": self.cmd_info,
            "set": self.cmd_set,
            "reset": self.cmd_reset,
            "replay": self.cmd_replay,
        }

    def hello(self):
        self.announce()
        up = self.uptime.now()
        for name, why in self.failed:
            self.out.error(up, name, why)

    def announce(self):
        # The hello alone: at boot, and again when `set` changed what it says (the
        # interval), so the meta and the bridge's silence timer follow the board.
        self.out.hello(self.uptime.now(), FIRMWARE_VERSION, self.config["board"],
                       [s.name for s in self.sensors], self.metrics, self.interval_ms)

    def sample(self):
        # One reading of every sensor; the line carries the metrics that succeeded.
        values = self.values
        i = 0
        ok = False
        for sensor in self.sensors:
            n = len(sensor.metrics)
            try:
                sensor.read_into(values, i)
                ok = True
            except Exception as e:  # OSError, CRC error, 85 C: reported, retried next time
                for j in range(i, i + n):
                    values[j] = None
                self.read_errors += 1
                self.out.error(self.uptime.now(), sensor.name, reason(e))
            i += n
        if not ok:
            return None
        seq = self.seq
        self.seq += 1
        self.out.reading(seq, self.uptime.now(), values)
        return seq

    def handle(self, text):
        command_id, cmd, args, error = wire.decode_command(text)
        ok, value = self.run(cmd, args, error)
        if ok and cmd == "replay":  # answered by replay_step() once the lines are out
            value.command_id = command_id
            return
        self.out.answer(command_id, ok, value)
        if ok and cmd == "set":
            self.announce()

    def run(self, cmd, args, error=None):
        # -> (True, result) or (False, error text for a person); never raises.
        if error is not None:
            return False, error
        handler = self.commands.get(cmd)
        if handler is None:
            return False, "unknown command %r; known: %s" % (cmd, ", ".join(sorted(self.commands)))
        try:
            return True, handler(args)
        except ValueError as e:
            return False, str(e)
        except Exception as e:  # a bug in a handler is an answer, not a crash
            return False, "command failed: " + reason(e)

    def replay_step(self):
        # Called by the loop each turn while a replay runs: a few lines, then the answer.
        if self.replaying.step():
            self.replaying = None

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
        ring_ = getattr(self.out, "ring", None)
        return {
            "fw": FIRMWARE_VERSION,
            "board": self.config["board"],
            "device": self.config["device_id"],
            "boot": self.boot,
            "sensors": [s.name for s in self.sensors],
            "units": dict([(m[0], m[1]) for m in self.metrics]),
            "decimals": dict([(m[0], min(wire.MAX_DECIMALS, m[2])) for m in self.metrics]),
            "interval_ms": self.interval_ms,
            "wdt_ms": self.config["wdt_ms"],
            "mem_free": gc.mem_free(),
            "mem_alloc": gc.mem_alloc(),
            "seq": self.seq,
            "read_errors": self.read_errors,
            "uptime_ms": self.uptime.now(),
            "ring": ring_.capacity if ring_ else 0,
            "ring_first": ring_.first if ring_ and ring_.count else None,
        }

    def cmd_set(self, args):
        # {"interval_ms": N} changes the rate now; with "save": true it also goes to
        # config.json, so it survives a reset.
        for key in args:
            if key not in ("interval_ms", "save"):
                raise ValueError("set knows interval_ms and save, not %r" % (key,))
        if "interval_ms" not in args:
            raise ValueError("set needs args.interval_ms")
        value = args["interval_ms"]
        low, high = board.MIN_INTERVAL_MS, board.MAX_INTERVAL_MS
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError("interval_ms must be a whole number from %d to %d" % (low, high))
        self.interval_ms = value
        self.config["interval_ms"] = value
        saved = args.get("save") is True
        if saved:
            import boardconfig

            boardconfig.save_config(self.config)
            board.forget("boardconfig")
        return {"interval_ms": value, "saved": saved}

    def cmd_replay(self, args):
        # {"boot": B, "after": S}: write again every held reading of this boot after seq
        # S (all of them if B is another boot), then answer (ring.py, docs/protocol.md).
        ring_ = getattr(self.out, "ring", None)
        if ring_ is None:
            raise ValueError("replay is for boards on serial; this one keeps a backlog")
        if self.replaying is not None:
            raise ValueError("a replay is running; ask again after its answer")
        import ring

        start, stop = ring.plan(ring_, args, self.boot)
        self.replaying = ring.Replay(self.out, None, self.boot, start, stop)
        return self.replaying

    def cmd_reset(self, args):
        # Answered first; the loop resets once the answer is written.
        self.reset_pending = True
        return {"reset": True}
