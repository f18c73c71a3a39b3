# The board's half of the serial line protocol (docs/protocol.md); the host's half is
# iotpipe/wire.py, and both are tested against tests/vectors/wire.json.
#
# Written for kilobytes of RAM: a reading is written in pieces straight to the port,
# with every constant fragment built once at boot, so the steady state allocates only
# the few short strings of the numbers themselves. A value is written from its integer
# in units of its last decimal (kept so in the ring for a replay, ring.py), so a replayed
# line is the original byte for byte.
import json
from micropython import const

ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"
MAX_ID = 64
MAX_DECIMALS = const(6)
MISSING = const(-2147483648)  # ring.MISSING: no value (the sensor failed)
LIMIT = const(2147483647)


def _fixed_format(decimals, sign):
    decimals = min(MAX_DECIMALS, decimals)
    return sign + "%d" if not decimals else sign + "%d.%0" + str(decimals) + "d"


def _quantize(value, scale, written):
    # A value in units of its last decimal, rounded as the format `written` ("%.2f") does;
    # MISSING if none, not finite or beyond the int32 of a ring record.
    if value is None or value != value:
        return MISSING
    x = value * scale
    if not -LIMIT <= x <= LIMIT:  # also the infinities
        return MISSING
    q = round(x)
    x -= q
    if x == 0.5 or x == -0.5:
        # A tie after the multiplication: the value itself may lie on either side of it
        # (71.35 is 71.3499...), which the format decides exactly. Rare, so it may allocate.
        q = int((written % value).replace(".", ""))
    return q


def quote(text):
    return json.dumps(text)


def units_and_decimals(metrics):
    # The hello's (and the meta's) "units" and "decimals" members: each metric's unit, and
    # the decimals it is written with, which the host shows values with (Home Assistant's
    # suggested_display_precision). Built only when a hello is, so it costs no RAM between.
    return ('"units":{' + ",".join([quote(m[0]) + ":" + quote(m[1]) for m in metrics])
            + '},"decimals":{'
            + ",".join([quote(m[0]) + ":" + str(min(MAX_DECIMALS, m[2])) for m in metrics])
            + "}")


class Encoder:
    def __init__(self, write, device, boot, metrics, ring=None):
        # metrics: sequence of (name, unit, decimals), in the order values are given.
        # ring: a ring.Ring that keeps each reading for a replay, or None.
        self.write = write
        self.ring = ring
        origin = '"device":' + quote(device) + ',"boot":' + quote(boot)
        self._origin = origin
        self._reading = '{"type":"reading",' + origin + ',"seq":'
        self._keys = ['"' + m[0] + '":' for m in metrics]
        self._written = ["%." + str(min(MAX_DECIMALS, m[2])) + "f" for m in metrics]
        self._scales = [10 ** min(MAX_DECIMALS, m[2]) for m in metrics]
        self._formats = [_fixed_format(m[2], "") for m in metrics]
        self._negatives = [_fixed_format(m[2], "-") for m in metrics]
        self.q = [MISSING] * len(metrics)  # the values as written, reused
        self._replayed = [MISSING] * len(metrics)

    def reading(self, seq, uptime_ms, values):
        # values[i] is None for a metric whose sensor failed this time.
        q = self.q
        for i in range(len(values)):
            q[i] = _quantize(values[i], self._scales[i], self._written[i])
        if self.ring is not None:
            self.ring.push(seq, uptime_ms, q)
        self.line(seq, uptime_ms, q)

    def replay(self, seq):
        # The held reading seq, written again exactly as the first time.
        q = self._replayed
        self.line(seq, self.ring.read(seq, q), q)

    def line(self, seq, uptime_ms, q):
        w = self.write
        w(self._reading)
        w(str(seq))
        w(',"uptime_ms":')
        w(str(uptime_ms))
        w(',"metrics":{')
        first = True
        for i in range(len(q)):
            v = q[i]
            if v == MISSING:
                continue
            if not first:
                w(",")
            first = False
            w(self._keys[i])
            scale = self._scales[i]
            if scale == 1:
                w(str(v))
            elif v < 0:
                w(self._negatives[i] % (-v // scale, -v % scale))
            else:
                w(self._formats[i] % (v // scale, v % scale))
        w("}}\n")

    def hello(self, uptime_ms, fw, board, sensors, metrics, interval_ms):
        self.write(
            '{"type":"hello",' + self._origin + ',"uptime_ms":' + str(uptime_ms)
            + ',"fw":' + quote(fw) + ',"board":' + quote(board)
            + ',"sensors":[' + ",".join([quote(s) for s in sensors]) + "],"
            + units_and_decimals(metrics) + ',"interval_ms":' + str(interval_ms) + "}\n"
        )

    def error(self, uptime_ms, sensor, reason):
        self.write(
            '{"type":"error",' + self._origin + ',"uptime_ms":' + str(uptime_ms)
            + ',"sensor":' + quote(sensor) + ',"reason":' + quote(reason) + "}\n"
        )

    def event(self, uptime_ms, name, data):
        self.write(
            '{"type":"event",' + self._origin + ',"uptime_ms":' + str(uptime_ms)
            + ',"event":' + quote(name) + ',"data":' + json.dumps(data) + "}\n"
        )

    def answer(self, command_id, ok, payload):
        head = '{"type":"answer","id":' + (quote(command_id) if command_id else "null")
        if ok:
            self.write(head + ',"ok":true,"result":' + json.dumps(payload) + "}\n")
        else:
            self.write(head + ',"ok":false,"error":' + quote(payload) + "}\n")


    def replayed(self, command_id, boot, sent, first, missing):
        # The answer to `replay`, keys in the contract's order (json.dumps keeps none).
        self.write('{"type":"answer","id":' + quote(command_id) + ',"ok":true,"result":{"boot":'
                   + quote(boot) + ',"sent":' + str(sent) + ',"first":'
                   + ("null" if first is None else str(first)) + ',"missing":' + str(missing)
                   + "}}\n")


def valid_id(value):
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID:
        return False
    for ch in value:
        if ch not in ID_CHARS:
            return False
    return True


def decode_command(text):
    # -> (id or None, cmd, args, error or None). Never raises: a bad command is answered.
    try:
        obj = json.loads(text)
    except ValueError:
        return None, None, None, "malformed command: not JSON"
    if not isinstance(obj, dict):
        return None, None, None, "malformed command: not a JSON object"
    command_id = obj.get("id")
    if not valid_id(command_id):
        return None, None, None, "malformed command: 'id' must be 1-64 of [A-Za-z0-9_.:-]"
    cmd = obj.get("cmd")
    if not isinstance(cmd, str):
        return command_id, None, None, "malformed command: 'cmd' must be a string"
    args = obj.get("args", {})
    if not isinstance(args, dict):
        return command_id, cmd, None, "malformed command: 'args' must be an object"
    return command_id, cmd, args, None
