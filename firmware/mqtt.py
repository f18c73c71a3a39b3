# An MQTT 3.1.1 client over a socket, for kilobytes of RAM: the mechanism only.
# It connects, publishes (QoS 0, or QoS 1 waiting for the matching PUBACK), subscribes,
# pings and reads what the broker sends, and raises OSError or MQTTException on any
# failure. Whether and when to reconnect, what to buffer meanwhile: uplink.py decides.
# Like micropython-lib's umqtt.simple, with one receive buffer allocated once, a timeout
# on every read and a non-blocking check_msg() built on select.poll. Given a CA
# certificate (DER bytes) it speaks TLS and refuses a broker whose certificate that CA did
# not sign for its host name.
import select
import socket
import time
from micropython import const

CONNECT = const(0x10)
CONNACK = const(0x20)
PUBLISH = const(0x30)
PUBACK = const(0x40)
SUBSCRIBE = const(0x82)  # the reserved flag bits 0010 are required by the spec
SUBACK = const(0x90)
PINGREQ = const(0xC0)
PINGRESP = const(0xD0)
DISCONNECT = const(0xE0)
MAX_REMAINING = const(268435455)  # four bytes of remaining length
CONNACK_CODES = {1: "unacceptable protocol version", 2: "client id rejected",
                 3: "server unavailable", 4: "bad user name or password", 5: "not authorised"}


class MQTTException(Exception):
    pass


def _bytes(value):
    # Lengths on the wire count bytes, not characters.
    return value.encode() if isinstance(value, str) else value


def _u16(n):
    return bytes((n >> 8, n & 0xFF))


def remaining_length(n, out, at=0):
    # Writes n as MQTT's variable-length integer into out[at:]; returns the byte count.
    if not 0 <= n <= MAX_REMAINING:
        raise MQTTException("packet too long: %d bytes" % n)
    i = at
    while True:
        b = n & 0x7F
        n >>= 7
        out[i] = b | 0x80 if n else b
        i += 1
        if not n:
            return i - at


class MQTTClient:
    def __init__(self, client_id, host, port=1883, user=None, password=None,
                 keepalive_s=60, timeout_ms=4000, max_packet=768, ca=None):
        self.client_id = _bytes(client_id)
        self.ca = ca
        self.host = host
        self.port = port
        self.user = _bytes(user)
        self.password = _bytes(password)
        self.keepalive_s = keepalive_s
        self.timeout_ms = timeout_ms
        self.buf = bytearray(max_packet)  # every incoming packet lands here
        self.head = bytearray(5)  # fixed header of an outgoing packet
        self.sock = None
        self.poller = None
        self.pid = 0
        self.will = None
        self.cb = None
        self.pongs = 0  # PINGRESPs received: a policy may wait for the next one
        self.last_tx = self.last_rx = time.ticks_ms()

    def set_callback(self, cb):
        # cb(topic, msg): both memoryviews into the receive buffer, valid only during the
        # call; msg is None when the message was larger than the buffer (it is dropped).
        self.cb = cb

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.will = (_bytes(topic), _bytes(msg), retain, qos)

    # --- sending ----------------------------------------------------------------------
    def _write(self, data):
        mv = memoryview(data)
        while mv:
            n = self.sock.write(mv)
            if not n:
                raise OSError(104)  # ECONNRESET: the stream took nothing
            mv = mv[n:]

    def _header(self, kind, length):
        head = self.head
        head[0] = kind
        n = remaining_length(length, head, 1)
        self._write(memoryview(head)[:1 + n])
        self.last_tx = time.ticks_ms()

    def _send(self, kind, parts):
        # One packet in one write when it fits the buffer: written in pieces, Nagle's
        # algorithm and the peer's delayed ACK would hold each packet back ~40 ms.
        length = 0
        for p in parts:
            length += len(p)
        buf = self.buf
        buf[0] = kind
        at = 1 + remaining_length(length, buf, 1)
        if at + length > len(buf):
            self._header(kind, length)
            for p in parts:
                self._write(p)
            return
        for p in parts:
            buf[at:at + len(p)] = p
            at += len(p)
        self._write(memoryview(buf)[:at])
        self.last_tx = time.ticks_ms()

    def _next_pid(self):
        self.pid = self.pid % 65535 + 1  # 1..65535: zero is not a packet id
        return self.pid

    # --- connection -------------------------------------------------------------------
    def connect(self, clean_session=True):
        # -> True when the broker kept a session for this client id (clean_session=False).
        self.close()
        addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0][-1]
        sock = socket.socket()
        try:
            sock.settimeout(self.timeout_ms / 1000)
            sock.connect(addr)
            if self.ca:
                sock = self._tls(sock)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN)
        try:
            return self._handshake(clean_session)
        except BaseException:
            self.close()
            raise

    def _tls(self, sock):
        import ssl  # only then: the TLS state is tens of KB that a plain board never needs

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=self.ca)
        return ctx.wrap_socket(sock, server_hostname=self.host)

    def _handshake(self, clean_session):
        flags = 0x02 if clean_session else 0
        ka = self.keepalive_s
        parts = [b"\x00\x04MQTT\x04", None, _u16(ka), _u16(len(self.client_id)), self.client_id]
        if self.will:
            topic, msg, retain, qos = self.will
            flags |= 0x04 | qos << 3 | (0x20 if retain else 0)
            parts += [_u16(len(topic)), topic, _u16(len(msg)), msg]
        if self.user is not None:
            flags |= 0x80
            parts += [_u16(len(self.user)), self.user]
            if self.password is not None:
                flags |= 0x40
                parts += [_u16(len(self.password)), self.password]
        parts[1] = bytes((flags,))
        self._send(CONNECT, parts)
        kind, n = self._read_packet()
        if kind != CONNACK or n != 2:
            raise MQTTException("expected CONNACK, got packet type %d" % (kind >> 4))
        code = self.buf[1]
        if code:
            raise MQTTException("connection refused: %s" % CONNACK_CODES.get(code, code))
        return bool(self.buf[0] & 1)

    def disconnect(self):
        # A clean goodbye: the broker does not send the will.
        try:
            self._header(DISCONNECT, 0)
        finally:
            self.close()

    def close(self):
        # Abrupt: the broker sends the will, as when power or Wi-Fi is lost.
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.poller = None

    # --- packets ----------------------------------------------------------------------
    def publish(self, topic, msg, retain=False, qos=0):
        topic = _bytes(topic)
        pid = self._next_pid() if qos else 0
        parts = [_u16(len(topic)), topic, _u16(pid), _bytes(msg)]
        if not qos:
            parts.pop(2)
        self._send(PUBLISH | qos << 1 | (1 if retain else 0), parts)
        if qos:
            self._wait_for(PUBACK, pid)

    def subscribe(self, topic, qos=1):
        topic = _bytes(topic)
        pid = self._next_pid()
        self._send(SUBSCRIBE, [_u16(pid), _u16(len(topic)), topic, bytes((qos,))])
        granted = self._wait_for(SUBACK, pid)
        if granted == 0x80:
            raise MQTTException("subscription to %s refused" % topic.decode())
        return granted

    def ping(self):
        self._header(PINGREQ, 0)

    def check_msg(self, timeout_ms=0):
        # Handles every packet that arrives within timeout_ms (0: only those already
        # here) and returns; messages go to the callback.
        if self.sock is None:
            raise OSError(107)  # ENOTCONN
        while self.sock is not None and self.poller.poll(timeout_ms):
            self._dispatch(self._read_packet())
            timeout_ms = 0

    def _wait_for(self, kind, pid):
        # Reads packets until the acknowledgement of pid; a message from the broker that
        # comes first is handled on the way (the callback must not publish).
        deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
        while True:
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0 or not self.poller.poll(left):
                raise OSError(110)  # ETIMEDOUT: no acknowledgement in time
            got, n = self._read_packet()
            buf = self.buf
            if got == kind and n >= 2 and (buf[0] << 8 | buf[1]) == pid:
                return buf[2] if kind == SUBACK else 0
            self._dispatch((got, n))

    def _dispatch(self, packet):
        kind, n = packet
        if kind & 0xF0 == PUBLISH:
            self._received(kind, n)
        elif kind == PINGRESP:
            self.pongs += 1
        elif kind not in (PUBACK, SUBACK):  # late acknowledgements are harmless
            raise MQTTException("unexpected packet type %d" % (kind >> 4))

    def _received(self, kind, n):
        buf = self.buf
        mv = memoryview(buf)
        qos = kind >> 1 & 3
        tlen = buf[0] << 8 | buf[1]
        at = 2 + tlen
        pid = 0
        if qos:
            pid = buf[at] << 8 | buf[at + 1]
            at += 2
        if self.cb:
            self.cb(mv[2:2 + tlen], mv[at:n] if n <= len(buf) else None)
        if qos == 1:
            self._send(PUBACK, [_u16(pid)])

    # --- reading ----------------------------------------------------------------------
    def _read_into(self, mv):
        while mv:
            n = self.sock.readinto(mv)
            if not n:
                raise OSError(104)  # ECONNRESET: the broker closed the connection
            mv = mv[n:]

    def _read_packet(self):
        # -> (first byte, remaining length). The body is in self.buf; the part of a body
        # longer than the buffer is read and thrown away (a message's topic and packet id
        # are kept, its payload is lost: the callback is told with msg None).
        one = memoryview(self.head)[:1]
        self._read_into(one)
        kind = self.head[0]
        n = shift = 0
        while True:
            self._read_into(one)
            n |= (self.head[0] & 0x7F) << shift
            if not self.head[0] & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MQTTException("malformed remaining length")
        size = len(self.buf)
        self._read_into(memoryview(self.buf)[:min(n, size)])
        left = n - size
        while left > 0:
            step = min(left, size // 2)
            self._read_into(memoryview(self.buf)[size - step:size])
            left -= step
        self.last_rx = time.ticks_ms()
        return kind, n
