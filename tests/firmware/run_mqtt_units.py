# Runs under the MicroPython unix port (tests/test_firmware_mqtt.py): the pure parts of a
# board on MQTT — remaining length, backlog ring, RTC state. Its payloads and request
# decoding: run_mqtt_vectors.py, against the shared vectors.

import backlog
import mqtt
import rtcstate
from check import check, done


def remaining_lengths():
    out = bytearray(4)
    for n in (0, 127, 128, 16383, 16384, 2097151, 2097152, 268435455):
        k = mqtt.remaining_length(n, out)
        print("len %d %s" % (n, bytes(out[:k]).hex()))
    try:
        mqtt.remaining_length(268435456, out)
        check("a length over 4 bytes is refused", False)
    except mqtt.MQTTException:
        check("a length over 4 bytes is refused", True)


def ring():
    b = backlog.Backlog(3, 2)
    for seq in range(5):
        b.push(seq, seq * 10, -1 if seq == 4 else 1000 + seq, [seq + 0.5, None])
    check("a full backlog drops the oldest and counts it", len(b) == 3 and b.dropped == 2)
    seq, up, ts, values = b.oldest()
    check("the oldest kept comes first", (seq, up, ts) == (2, 20, 1002) and values[0] == 2.5)
    check("a failed metric is NaN", values[1] != values[1])
    data = b.to_bytes()
    small = backlog.Backlog(2, 2)
    small.load(data)
    check("loading into a smaller ring drops the oldest", small.oldest()[0] == 3
          and small.dropped == 1)
    b.pop(0, 1002)
    b.pop(0, 1003)
    check("ts -1 marks a reading taken before the clock was set", b.oldest()[2] == -1)


def seqs(b):
    # Sends what waits, oldest first, each acknowledged at once: -> their seqs.
    sent = []
    while len(b):
        sent.append(b.oldest()[0])
        b.pop(b.now, 0)
    return sent


def kept_copies():
    # Uptime seconds are given by the test (b.now), as uplink.py gives the node's.
    b = backlog.Backlog(6, 1, 150)
    b.now = 1000
    for seq in range(3):
        b.push(seq, seq, 5000 + seq, [seq])
    check("waiting readings go out oldest first", seqs(b) == [0, 1, 2])
    check("acknowledged ones are kept, not waiting", len(b) == 0 and b.kept == 3)
    b.push(3, 3, 5003, [3])
    b.resend(1000)
    check("after a reconnect the copies go again in order, before the newer reading",
          seqs(b) == [0, 1, 2, 3])
    b.now = 1100
    for seq in range(4, 10):  # six new readings in a ring of six: every copy gives way
        b.push(seq, seq, -1, [seq])
    check("copies give way to unsent readings and are no drop",
          len(b) == 6 and b.kept == 0 and b.dropped == 0)
    b.push(10, 10, -1, [10])
    check("an unsent reading pushed out is a drop", b.dropped == 1 and b.oldest()[0] == 5)
    b.pop(1100, 777)
    b.resend(1100)
    check("a copy carries the ts it was sent with", b.oldest()[:3] == (5, 5, 777))
    check("an outage's reading acknowledged just now is sent again too", seqs(b) == list(
        range(5, 11)))
    b.resend(1100 + 150)
    check("within 150 s of its PUBACK a copy is sent again", len(b) == 6)
    seqs(b)  # acknowledged again at 1100: kept anew
    b.resend(1100 + 151)
    check("past 150 s it is forgotten", len(b) == 0 and b.kept == 0)
    b.now = 2000
    for seq in range(11, 14):
        b.push(seq, seq, 1, [seq])
    b.pop(2000, 1)  # 11 acknowledged at 2000, 12 and 13 at 2100
    b.now = 2100
    seqs(b)
    b.resend(2200)
    check("only the copies acknowledged within 150 s go again", seqs(b) == [12, 13])
    b.resend(2200)
    b.push(14, 14, 1, [14])
    b.oldest()
    b.pop(2200, 1)  # the connection fails while the copies are sent again
    b.resend(2200)
    check("after an interrupted resend every copy goes again, in order",
          seqs(b) == [12, 13, 14])
    off = backlog.Backlog(2, 1)
    off.push(0, 0, 1, [0])
    off.pop(0, 1)
    off.resend(0)
    check("without keep_s nothing is kept", len(off) == 0 and off.kept == 0)


def state():
    b = backlog.Backlog(4, 1)
    b.push(7, 70, 5000, [1.25])
    b.dropped = 3
    s = rtcstate.State("0a1b2c3d")
    s.seq, s.uptime_ms, s.synced_ms, s.flags = 8, 123456789012, 99, rtcstate.META_DUE
    data = rtcstate.pack(s, b)
    back = rtcstate.unpack(data)
    check("state survives packing", (back.boot, back.seq, back.uptime_ms, back.synced_ms,
                                      back.flags, back.dropped, back.n_metrics)
          == ("0a1b2c3d", 8, 123456789012, 99, 1, 3, 1))
    b2 = backlog.Backlog(4, 1)
    b2.load(back.records)
    check("readings survive packing", b2.oldest()[:3] == (7, 70, 5000))
    check("random RTC memory is no state", rtcstate.unpack(b"\x00" * 64) is None
          and rtcstate.unpack(None) is None)
    check("ESP8266 RTC memory holds 16 readings of 2 metrics",
          rtcstate.capacity(492, backlog.HEAD_SIZE + 8) == 16)


remaining_lengths()
ring()
kept_copies()
state()
done()
