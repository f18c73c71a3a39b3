"""The board on this port as the bridge knows it: what each of its lines becomes.

State lives here (which device, online or not, its last seq per boot, requests waiting for
its answers); no I/O does. Readings and events come back to the caller to go through the
spool; everything else a line asks for (a new MQTT connection, retained status, meta and
discovery, answers, bytes for the board) is queued as ``effects`` values, in order, for
``link`` to carry out after each call (``take``). Data flows one way: port → lines →
device → link → spool/outbox → MQTT, each module visited once.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Iterable

from iotpipe import topics, wire
from iotpipe.bridge.continuity import NEW, Continuity, Gap, count_and_log
from iotpipe.bridge.effects import Connect, Effect, Publish, Retain, Write
from iotpipe.bridge.fastpath import FastReadings
from iotpipe.bridge.lines import TooLong
from iotpipe.bridge.requests import Actions, Reply, Route, Router
from iotpipe.bridge.statelog import changed
from iotpipe.bridge.translate import Message, Translator
from iotpipe.bridge.watch import Liveness
from iotpipe.counters import Counters
from iotpipe.mqttwire import discovery
from iotpipe.mqttwire.answer import encode_answer

log = logging.getLogger(__name__)

# The board's hello is usually gone by the time the port is opened (the port's input
# buffer is flushed on open), so the bridge asks for the same description.
META_REQUEST_ID = "iotpipe-bridge-meta"
INFO_RETRY_S = 10.0


class Device:
    def __init__(
        self,
        translator: Translator,
        router: Router,
        counters: Counters,
        ha_prefix: str | None,
        bridge_status: str,
    ) -> None:
        self.translator = translator
        self.router = router
        self.counters = counters
        self.ha_prefix = ha_prefix
        self.bridge_status = bridge_status
        self.id: str | None = None
        self.effects: list[Effect] = []
        self.continuity = Continuity(counters, self.write)
        self.fast = FastReadings()
        self._telemetry_topic = ""
        self.liveness = Liveness()
        self._online: bool | None = None
        self._state_lock = threading.Lock()
        self._meta_boot: str | None = None
        self._announced: wire.Hello | None = None  # so a metric the board dropped is removed
        self._asked_info = 0.0
        self._last_ts = 0.0

    def take(self) -> list[Effect]:
        """What the calls since the last ``take`` asked for, oldest first."""
        effects, self.effects = self.effects, []
        return effects

    def write(self, data: bytes) -> None:
        self.effects.append(Write(data))

    # --- lines from the board ---------------------------------------------------------
    def handle_all(self, lines: Iterable[bytes], received_at: float) -> list[tuple[str, bytes]]:
        """Everything read at once: (topic, payload) of what must go through the spool —
        new readings (a replayed one already committed is dropped), events, gap reports."""
        out: list[tuple[str, bytes]] = []
        fast = self.fast.telemetry
        run: list[tuple[int, int]] = []  # (seq, digest) of fast readings not yet admitted
        payloads: list[bytes] = []
        quick = 0
        for raw in lines:
            ts = self._stamp(received_at)
            got = fast(raw, ts) if self.id is not None else None
            if got is None:
                self._admit_run(run, payloads, out)  # first: the lines keep their order
                message = self.handle(raw, ts)
                if message is not None:
                    out.append((message.topic, message.payload))
                continue
            quick += 1
            run.append((got[0], zlib.crc32(raw.rstrip(b"\r"))))
            payloads.append(got[1])
        self._admit_run(run, payloads, out)
        if quick:
            self.counters.inc("lines", n=quick)
            self.counters.inc("accepted", "reading", quick)
            self.liveness.heard(time.monotonic())
            if not self._online:
                self.set_online(True, "a line came")
        out.extend(self.gap_events())
        return out

    def _admit_run(
        self, run: list[tuple[int, int]], payloads: list[bytes], out: list[tuple[str, bytes]]
    ) -> None:
        """The fast path's readings so far, admitted together (then emptied): the new ones
        go out, the ones already committed (a replay sends some again) are counted."""
        if not run:
            return
        topic = self._telemetry_topic
        if not self.continuity.storing:  # the outbox counts them as not stored
            out.extend((topic, payload) for payload in payloads)
        else:
            device, boot = self.fast.device or "", self.fast.boot or ""
            verdicts = self.continuity.admit_many(device, boot, run, time.monotonic())
            for verdict, payload in zip(verdicts, payloads, strict=True):
                if verdict == NEW:
                    out.append((topic, payload))
                else:
                    self.counters.inc("duplicates", verdict)
        run.clear()
        payloads.clear()

    def _stamp(self, received_at: float) -> float:
        """Each line its own receipt time, 1 ms after the last at least: lines read in one
        chunk (a replay, a backlog after a restart) would share one, and a store that
        keys samples by time would keep only one of them."""
        ts = round(received_at, 3)
        if ts <= self._last_ts:
            ts = round(self._last_ts + 0.001, 3)
        self._last_ts = ts
        return ts

    def _is_new(self, device: str, boot: str, seq: int, raw: bytes) -> bool:
        """Not a reading already committed (a replay sends some again)."""
        if not self.continuity.storing:
            return True  # the outbox counts it as not stored; a replay brings it back
        digest = zlib.crc32(raw.rstrip(b"\r"))
        verdict = self.continuity.admit(device, boot, seq, digest, time.monotonic())
        if verdict != NEW:
            self.counters.inc("duplicates", verdict)
        return verdict == NEW

    def gap_events(self) -> list[tuple[str, bytes]]:
        """A ``readings_missing`` event for each gap found (contract 2 of BRIEF)."""
        if self.id is None:
            return []
        boot = self.fast.boot if self.fast.device == self.id else None
        now = time.time()
        out = []
        for gap in self.continuity.gaps:
            message = self.translator.gap(gap, boot or gap.boot, now)
            out.append((message.topic, message.payload))
        return out

    def report_dropped(self, gaps: list[Gap]) -> None:
        """Readings the spool's size bound pushed out: published now, not spooled (the
        spool is full), counted and logged like every gap."""
        for gap in gaps:
            count_and_log(self.counters, gap)
            self.effects.append(Publish(self.translator.gap(gap, gap.boot, time.time())))

    def handle(self, raw: bytes, received_at: float) -> Message | None:
        """Queue what is state, return what must go through the spool, count the rest."""
        self.counters.inc("lines")
        if isinstance(raw, TooLong):
            self.reject("too_long", f"line over {wire.MAX_LINE_BYTES} bytes", raw)
            return None
        try:
            line = wire.parse_line(raw)
            if isinstance(line, wire.Answer) and line.id == META_REQUEST_ID and line.ok:
                line = wire.hello_from_info(line.result)
        except wire.LineRejected as exc:
            self.reject(exc.reason, exc.detail, raw)
            return None
        if isinstance(line, wire.Answer):
            self._answer(line)
            return None
        if line.device != self.id:
            self.adopt(line.device)
        self.liveness.heard(time.monotonic())
        self.set_online(True, "a line came")
        self.counters.inc("accepted", type(line).__name__.lower())
        if isinstance(line, wire.Hello):
            self._describe(line, received_at)
            return None
        if isinstance(line, wire.Reading):
            if line.boot != self._meta_boot:
                self.ask_info(throttled=True)
            self.fast.learn(line)
            if not self._is_new(line.device, line.boot, line.seq, raw):
                return None
        return self.translator.message(line, line.device, received_at)

    def adopt(self, device: str) -> None:
        """The first line of a board, or one from a board that now says it is another."""
        if self.id is not None and self.id != device:
            changed(log, "device_replaced", logging.WARNING, device=device, was=self.id)
            self.set_online(False, f"replaced by {device}")
        self.id = device
        self._telemetry_topic = topics.topic(self.translator.base, device, "telemetry")
        self.fast.forget()
        self._online = None
        self._meta_boot = None
        self.effects.append(Connect(device))

    def reject(self, reason: str, detail: str, raw: bytes) -> None:
        self.counters.inc("rejected", reason)
        count = self.counters.get("rejected", reason)
        # DEBUG, not WARNING: a board at the wrong baud rate produces one per line.
        log.debug("skipped a line (%s: %s): %r", reason, detail, raw[:80])
        if count in (1, 10, 100, 1000, 10_000, 100_000):
            log.warning("skipped %d lines so far for %s, last: %s", count, reason, detail)

    def _describe(self, hello: wire.Hello, received_at: float) -> None:
        if hello.boot != self._meta_boot:
            changed(log, "board_boot", device=hello.device, boot=hello.boot, fw=hello.fw)
        self._meta_boot = hello.boot
        self.liveness.interval_s = max(hello.interval_ms / 1000, 0.001)
        self.effects.append(Retain(self.translator.message(hello, hello.device, received_at)))
        if self.ha_prefix is not None:
            for config in discovery.configs(
                hello, self.translator.base, self.bridge_status, self.ha_prefix, self._announced
            ):
                self.effects.append(Retain(config))
            self._announced = hello

    def ask_info(self, throttled: bool = False) -> None:
        now = time.monotonic()
        if throttled and now - self._asked_info < INFO_RETRY_S:
            return
        self._asked_info = now
        self.write(wire.encode_command(META_REQUEST_ID, "info"))

    # --- availability -----------------------------------------------------------------
    def set_online(self, online: bool, why: str) -> None:
        with self._state_lock:
            if self.id is None or self._online == online:
                return
            self._online = online
        self.effects.append(Retain(self.translator.status(self.id, online)))
        changed(log, "device_online" if online else "device_offline", device=self.id, why=why)

    def check_quiet(self) -> None:
        if self._online and self.liveness.quiet(time.monotonic()):
            silent = time.monotonic() - self.liveness.last_line
            self.set_online(False, f"no line for {silent:.0f} s")

    # --- requests and answers ---------------------------------------------------------
    def _answer(self, answer: wire.Answer) -> None:
        if self.continuity.is_replay(answer.id):
            self.continuity.answered(answer, self.id, time.monotonic())
            return
        reply, actions = self.router.answered(answer)
        if reply is None:
            self.counters.inc("answers_unmatched")
            if self.id is not None:
                default = self.translator.message(answer, self.id, time.time())
                self.effects.append(Publish(default))
        else:
            self.counters.inc("command_answers")
            self.act(Actions(actions.write, [reply, *actions.replies]))

    def act(self, actions: Actions) -> None:
        if actions.write:
            self.write(b"".join(actions.write))
        for reply in actions.replies:
            self.reply(reply)

    def reply_error(self, route: Route, client_id: str | int | None, error: str) -> None:
        self.reply(Reply(route, encode_answer(client_id, False, error)))

    def reply(self, reply: Reply) -> None:
        message = Message(reply.route.topic, reply.payload)
        self.effects.append(Publish(message, reply.route.correlation))
