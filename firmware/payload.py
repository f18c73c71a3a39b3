# The board's half of the MQTT contract (docs/protocol.md), for a board that publishes
# itself: the topics and payloads of iotpipe/topics.py and iotpipe/mqttwire/, and requests
# decoded as iotpipe/mqttwire/request.py decodes them; both halves are checked against
# tests/vectors/mqtt.json. Pure: no I/O. Like wire.py, the constant fragments of a
# telemetry payload are built once.
import json

from wire import units_and_decimals

MAX_ID = 64
MAX_REPLY_TOPIC = 256


def topic(base, device, kind):
    return base + "/" + device + "/" + kind


def ts_text(ts_ms):
    # Unix seconds with milliseconds, as the bridge writes round(t, 3); null if unknown.
    if ts_ms is None or ts_ms < 0:
        return "null"
    return "%d.%03d" % (ts_ms // 1000, ts_ms % 1000)


class Payloads:
    def __init__(self, device, boot, metrics):
        # metrics: (name, unit, decimals) in the order values are given, as in wire.py.
        self.device = device
        self.boot = boot
        self._origin = '{"device":' + json.dumps(device) + ',"boot":' + json.dumps(boot)
        self._keys = ['"' + m[0] + '":' for m in metrics]
        self._formats = ["%." + str(m[2]) + "f" for m in metrics]

    def telemetry(self, seq, ts_ms, uptime_ms, values):
        # Keys in Telemetry.to_json's order, numbers plainly written: the dashboard's fast
        # path (iotpipe/dashboard/fasttelemetry.py) takes it as it takes the bridge's.
        parts = [self._origin, ',"seq":', str(seq), ',"ts":', ts_text(ts_ms),
                 ',"uptime_ms":', str(uptime_ms), ',"metrics":{']
        first = True
        for i in range(len(values)):
            value = values[i]
            if value is None or value != value:  # None or NaN: the sensor failed
                continue
            if not first:
                parts.append(",")
            first = False
            parts.append(self._keys[i])
            parts.append(self._formats[i] % value)
        parts.append("}}")
        return "".join(parts)

    def meta(self, fw, board, sensors, metrics, interval_ms, ts_ms):
        return (self._origin + ',"fw":' + json.dumps(fw) + ',"board":' + json.dumps(board)
                + ',"sensors":[' + ",".join([json.dumps(s) for s in sensors]) + "],"
                + units_and_decimals(metrics) + ',"interval_ms":' + str(interval_ms)
                + ',"ts":' + ts_text(ts_ms) + "}")

    def event(self, uptime_ms, ts_ms, name, data):
        return (self._origin + ',"uptime_ms":' + str(uptime_ms) + ',"ts":' + ts_text(ts_ms)
                + ',"event":' + json.dumps(name) + ',"data":' + json.dumps(data) + "}")


def answer(request_id, ok, value):
    head = '{"id":' + json.dumps(request_id)
    if ok:
        return head + ',"ok":true,"result":' + json.dumps(value) + "}"
    return head + ',"ok":false,"error":' + json.dumps(value) + "}"


def usable_topic(name):
    if not isinstance(name, str) or not 0 < len(name) <= MAX_REPLY_TOPIC:
        return False
    return "+" not in name and "#" not in name and "\0" not in name


def decode_request(raw, default_reply):
    # -> (id or None, cmd, args, reply topic, error or None). Never raises: a bad
    # request is answered, to its reply_to when that much could be read.
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeError):
        return None, None, None, default_reply, "the request is not JSON"
    if not isinstance(obj, dict):
        return None, None, None, default_reply, "the request must be a JSON object"
    reply = obj.get("reply_to")
    reply = reply if usable_topic(reply) else default_reply
    rid = obj.get("id")
    ok_id = isinstance(rid, str) and 0 < len(rid) <= MAX_ID
    if not (ok_id or isinstance(rid, int) and not isinstance(rid, bool)):
        return None, None, None, reply, "'id' must be a string of 1-64 characters or an integer"
    cmd = obj.get("cmd")
    if not isinstance(cmd, str) or not 0 < len(cmd) <= MAX_ID:
        return rid, None, None, reply, "'cmd' must be a command name"
    args = obj.get("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return rid, cmd, None, reply, "'args' must be an object"
    return rid, cmd, args, reply, None
