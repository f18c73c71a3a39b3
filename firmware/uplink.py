# A board that publishes to the broker itself: the policy around mqtt.py. Joins Wi-Fi,
# sets the clock, connects with its will ("offline", retained, on its status topic),
# says "online" and its meta, takes requests from its cmd topic, and publishes what
# waits in the Outbox. Every network failure ends in lost(): close, count, and try again
# after a backoff that doubles up to a minute. Nothing here ends the program.
import time
from micropython import const

import backlog
import mqtt
import netboard
import payload

MAX_EVENTS = const(4)  # events kept while offline (each a few short objects)
MAX_REQUESTS = const(8)  # requests received but not yet answered
MIN_BACKOFF_MS = const(1000)
MAX_BACKOFF_MS = const(60000)
WIFI_TIMEOUT_MS = const(10000)
CLOCK_RETRY_MS = const(60000)  # a clock not yet set is tried again this often
CLOCK_RESYNC_MS = const(3600000)  # RTCs drift, most of all in deep sleep: NTP hourly
FAILED = (OSError, mqtt.MQTTException)


class Outbox:
    # The node's out on MQTT (as wire.Encoder is on serial): readings go to the backlog,
    # events wait in a short queue, and nothing is sent from here; Uplink.flush sends.
    def __init__(self, device, boot, metrics, capacity, keep_s=0):
        self.payloads = payload.Payloads(device, boot, metrics)
        self.backlog = backlog.Backlog(capacity, len(metrics), keep_s)
        self.events = []  # (uptime_ms, ts_ms, name, data), oldest first
        self.events_dropped = 0
        self.requests_dropped = 0
        self.about = None  # (fw, board, sensors, metrics) from the hello
        self.meta_due = False
        self.clock_ok = False  # the RTC holds Unix time (NTP, or the unix port's host)

    def ts_ms(self):
        return netboard.wall_ms() if self.clock_ok else -1

    def reading(self, seq, uptime_ms, values):
        self.backlog.push(seq, uptime_ms, self.ts_ms(), values)

    def hello(self, uptime_ms, fw, board, sensors, metrics, interval_ms):
        self.about = (fw, board, sensors, metrics)
        self.meta_due = True

    def error(self, uptime_ms, sensor, reason):
        self.event(uptime_ms, "sensor_error", {"sensor": sensor, "reason": reason})

    def event(self, uptime_ms, name, data):
        if len(self.events) >= MAX_EVENTS:
            self.events.pop(0)
            self.events_dropped += 1
        self.events.append((uptime_ms, self.ts_ms(), name, data))

    def dropped(self):
        b = self.backlog
        if b.dropped or self.events_dropped or self.requests_dropped:
            return {"readings_dropped": b.dropped, "events_dropped": self.events_dropped,
                    "requests_dropped": self.requests_dropped, "buffer_max": b.capacity}
        return None


class Uplink:
    def __init__(self, config, node, feed):
        self.config = config
        self.node = node
        self.out = node.out
        self.feed = feed  # the watchdog, fed between steps that may take seconds
        base, device = config["base_topic"], config["device_id"]
        self.topics = dict([(k, payload.topic(base, device, k)) for k in
                            ("telemetry", "status", "meta", "event", "reply", "cmd")])
        self.client = mqtt.MQTTClient(device, config["mqtt_host"], config["mqtt_port"],
                                      config["mqtt_user"], config["mqtt_password"],
                                      config["mqtt_keepalive_s"], ca=config["mqtt_ca_der"])
        self.client.set_last_will(self.topics["status"], "offline", retain=True, qos=1)
        self.client.set_callback(self._on_message)
        self.requests = []  # raw request payloads, answered by handle_requests()
        self.connected = False
        self.backoff_ms = MIN_BACKOFF_MS
        self.retry_at = time.ticks_ms()
        self.synced_ms = -1  # node uptime when the clock was last set
        self.clock_tried = None  # ticks of the last failed attempt
        self.failures = 0

    # --- connection -------------------------------------------------------------------
    def connect(self, clean_session=True):
        # Raises on failure; the caller hands the exception to lost().
        netboard.wifi_connect(self.config["wifi_ssid"], self.config["wifi_password"],
                              WIFI_TIMEOUT_MS, self.feed)
        self.feed()
        self.sync_clock()
        present = self.client.connect(clean_session)
        self.connected = True
        self.feed()
        self.client.publish(self.topics["status"], "online", retain=True, qos=1)
        if not present:  # a kept session (battery mode) still has its subscription
            self.client.subscribe(self.topics["cmd"], 1)
        self.out.meta_due = self.out.meta_due or not present
        # A broker restarted from its last save lacks what it acknowledged since: the copies.
        self.out.backlog.resend(self.node.uptime.now() // 1000)
        self.backoff_ms = MIN_BACKOFF_MS
        print("iotpipe: connected to %s:%d%s as %s" % (self.config["mqtt_host"],
              self.config["mqtt_port"], " over TLS" if self.client.ca else "",
              self.config["device_id"]))

    def lost(self, e):
        self.client.close()  # abrupt: if the broker still hears us, it sends the will
        self.connected = False
        self.failures += 1
        self.retry_at = time.ticks_add(time.ticks_ms(), self.backoff_ms)
        print("iotpipe: broker unreachable (%r); again in %d ms" % (e, self.backoff_ms))
        self.backoff_ms = min(MAX_BACKOFF_MS, self.backoff_ms * 2)

    def goodbye(self):
        # Before a reset: say offline ourselves, since a clean DISCONNECT sends no will.
        if self.connected:
            try:
                self.client.publish(self.topics["status"], "offline", retain=True, qos=1)
                self.client.disconnect()
            except FAILED:
                self.client.close()
        self.connected = False

    def sync_clock(self):
        now = self.node.uptime.now()
        if self.synced_ms >= 0 and now - self.synced_ms < CLOCK_RESYNC_MS:
            return
        t = self.clock_tried
        if t is not None and time.ticks_diff(time.ticks_ms(), t) < CLOCK_RETRY_MS:
            return
        try:
            netboard.set_clock(self.config["ntp_host"])
        except Exception as e:  # no NTP server, DNS failure: readings wait for the clock
            self.clock_tried = time.ticks_ms()
            if t is None and not self.out.clock_ok:  # said once, not at every retry
                self.out.event(now, "clock_unset", {"reason": "%r" % (e,)})
            return
        self.synced_ms = now
        self.clock_tried = None
        self.out.clock_ok = True

    # --- sending ----------------------------------------------------------------------
    def flush(self):
        # Publishes, oldest first, what waits: meta, the drop report, events, readings.
        # Each leaves the outbox only once the broker acknowledged it.
        out, client = self.out, self.client
        if out.meta_due and out.about:
            fw, board, sensors, metrics = out.about
            client.publish(self.topics["meta"], out.payloads.meta(
                fw, board, sensors, metrics, self.node.interval_ms, out.ts_ms()), True, 1)
            out.meta_due = False
        dropped = out.dropped()
        if dropped:
            self._event(self.node.uptime.now(), out.ts_ms(), "buffer_overflow", dropped)
            out.backlog.dropped = out.events_dropped = out.requests_dropped = 0
        while out.events:
            self._event(*out.events[0])
            out.events.pop(0)
        while out.clock_ok and len(out.backlog):
            ts_ms = self._telemetry(out.backlog.oldest())
            out.backlog.pop(self.node.uptime.now() // 1000, ts_ms)
            self.feed()

    def _event(self, uptime_ms, ts_ms, name, data):
        self.client.publish(self.topics["event"],
                            self.out.payloads.event(uptime_ms, ts_ms, name, data), False, 1)

    def _telemetry(self, record):
        seq, uptime_ms, ts_ms, values = record
        if ts_ms < 0:  # taken before the clock was set: its time from its uptime
            ts_ms = netboard.wall_ms() - (self.node.uptime.now() - uptime_ms)
        self.client.publish(self.topics["telemetry"],
                            self.out.payloads.telemetry(seq, ts_ms, uptime_ms, values), False, 1)
        return ts_ms

    # --- requests ---------------------------------------------------------------------
    def _on_message(self, topic, msg):
        # Called inside mqtt.py, maybe while it waits for a PUBACK: only keep the request.
        if len(self.requests) >= MAX_REQUESTS:
            self.out.requests_dropped += 1
        else:
            self.requests.append(None if msg is None else bytes(msg))

    def handle_requests(self):
        while self.requests:
            raw = self.requests[0]
            reply = self.topics["reply"]
            if raw is None:
                rid, ok, value = None, False, "the request is over %d bytes" % len(
                    self.client.buf)
            else:
                rid, cmd, args, reply, error = payload.decode_request(raw, reply)
                ok, value = self.node.run(cmd, args, error)
            self.client.publish(reply, payload.answer(rid, ok, value), False, 1)
            if ok and cmd == "set":
                self.node.announce()  # the interval in the meta changed
            self.requests.pop(0)

    # --- waiting ----------------------------------------------------------------------
    def keep_up(self):
        # One turn of the always-on loop: reconnect when due, then send what waits.
        if not self.connected:
            if time.ticks_diff(time.ticks_ms(), self.retry_at) < 0:
                return
            try:
                self.connect()
            except FAILED as e:
                self.lost(e)
                return
        try:
            self.sync_clock()
            self.handle_requests()
            self.flush()
            self._keepalive()
        except FAILED as e:
            self.lost(e)

    def _keepalive(self):
        ka = self.config["mqtt_keepalive_s"] * 1000
        if not ka:
            return
        now = time.ticks_ms()
        if time.ticks_diff(now, self.client.last_rx) > ka * 3 // 2:
            raise OSError(110)  # the broker has not answered a ping: the link is dead
        if time.ticks_diff(now, self.client.last_tx) > ka // 2:
            self.client.ping()

    def wait(self, ms):
        # Lets ms pass, taking any message that arrives meanwhile.
        if not self.connected:
            time.sleep_ms(ms)
            return
        try:
            self.client.check_msg(ms)
        except FAILED as e:
            self.lost(e)

    def drain(self, timeout_ms):
        # Battery mode: the broker sends a kept session's queued requests right after
        # CONNACK, and answers a ping only after them, so a PINGRESP means all are here.
        client = self.client
        pongs = client.pongs
        client.ping()
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while client.pongs == pongs:
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0:
                break
            client.check_msg(left)
