# The board's half of the serial line protocol (docs/protocol.md); the host's half is
# iotpipe/wire.py, and both are tested against tests/vectors/wire.json.
#
# Written for kilobytes of RAM: a reading is written in pieces straight to the port,
# with every constant fragment built once at boot, so the steady state allocates only
# the few short strings of the numbers themselves.
import json

ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"
MAX_ID = 64


def quote(text):
    return json.dumps(text)


class Encoder:
    def __init__(self, write, device, boot, metrics):
        # metrics: sequence of (name, unit, decimals), in the order values are given.
        self.write = write
        origin = '"device":' + quote(device) + ',"boot":' + quote(boot)
        self._origin = origin
        self._reading = '{"type":"reading",' + origin + ',"seq":'
        self._keys = ['"' + m[0] + '":' for m in metrics]
        self._formats = ["%." + str(m[2]) + "f" for m in metrics]

    def reading(self, seq, uptime_ms, values):
        # values[i] is None for a metric whose sensor failed this time.
        w = self.write
        w(self._reading)
        w(str(seq))
        w(',"uptime_ms":')
        w(str(uptime_ms))
        w(',"metrics":{')
        first = True
        for i in range(len(values)):
            value = values[i]
            if value is None:
                continue
            if not first:
                w(",")
            first = False
            w(self._keys[i])
            w(self._formats[i] % value)
        w("}}\n")

    def hello(self, uptime_ms, fw, board, sensors, metrics, interval_ms):
        units = ",".join([quote(m[0]) + ":" + quote(m[1]) for m in metrics])
        self.write(
            '{"type":"hello",' + self._origin + ',"uptime_ms":' + str(uptime_ms)
            + ',"fw":' + quote(fw) + ',"board":' + quote(board)
            + ',"sensors":[' + ",".join([quote(s) for s in sensors]) + "]"
            + ',"units":{' + units + '},"interval_ms":' + str(interval_ms) + "}\n"
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
