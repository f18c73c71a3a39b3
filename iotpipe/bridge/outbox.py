"""The policy between the spool and the broker: what to send, when, and how fast.

Every accepted reading is committed to the spool first (``put``); ``step`` hands spooled
rows to MQTT in id order, at most ``window`` unacknowledged at a time, and deletes
a row when its PUBACK arrives. After each (re)connect it starts again from the oldest
unacknowledged row, so nothing is skipped; rows that were waiting when the connection came
up (the backlog) are sent at ``drain_rate`` per second so a long outage does not flood the
broker, and readings that arrive after them follow at full speed.

The spool may be missing or unwritable for a while (``storage``): then nothing is stored —
``put`` drops the batch, counted as ``not_stored{<reason>}``, and says so to its caller,
which forgets the batch's marks so the board is asked to send it again — and nothing is
sent from the spool until it works again.

Transport events (connect, disconnect, PUBACK) arrive from paho's callbacks; they are only
queued there and handled in ``step``, outside paho's calls (paho calls ``on_publish``
holding its own lock, which ``publish`` also takes).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable

from iotpipe.bridge.continuity import SPOOL_FULL, Gap
from iotpipe.bridge.spool import Dropped, Mark, Seen, Spool, SpoolError, batch_bytes
from iotpipe.bridge.statelog import changed
from iotpipe.bridge.storage import Storage
from iotpipe.counters import Counters

log = logging.getLogger(__name__)

# Unacknowledged readings at a time: the 100 paho held in flight when it kept the limit
# (the transport now leaves it to this window; iotpipe/bridge/publisher.py says why).
WINDOW = 100
DRAIN_TICK_S = 0.02
# A PUBACK means the broker has the message, not that it has written it down: Mosquitto
# saves to disk every autosave_interval (60 s in iotpipe/broker/conf.d), so one killed loses what
# it had not yet handed to a subscriber. Acknowledged rows stay this long — over twice
# that interval, as a save can come late on a busy broker — and are sent again after a
# reconnect; a test holds the two together.
KEEP_ACKED_S = 150.0
_CONNECTED, _DISCONNECTED = "connected", "disconnected"

Send = Callable[[str, bytes], "int | None"]
OnDropped = Callable[[list[Gap]], None]


def _dropped_gaps(dropped: Dropped) -> list[Gap]:
    """The readings the size bound pushed out, as runs of consecutive seqs."""
    gaps: list[Gap] = []
    for device, boot, seq in sorted(dropped.readings):
        last = gaps[-1] if gaps else None
        if last and (last.device, last.boot) == (device, boot) and seq == last.last + 1:
            gaps[-1] = Gap(device, boot, last.first, seq, SPOOL_FULL)
        else:
            gaps.append(Gap(device, boot, seq, seq, SPOOL_FULL))
    return gaps


class Outbox:
    def __init__(
        self,
        storage: Storage,
        send: Send,
        counters: Counters,
        drain_rate: float,
        window: int = WINDOW,
        on_dropped: OnDropped | None = None,
        keep_acked_s: float = KEEP_ACKED_S,
    ) -> None:
        self.keep_acked_s = keep_acked_s
        self.storage = storage
        self.on_dropped = on_dropped
        self.send = send
        self.counters = counters
        self.drain_rate = drain_rate
        self.window = window
        self._events: deque[int | str] = deque()
        self._inflight: dict[int, int] = {}  # mid -> spool row id
        self._cursor = 0  # the last row id handed to MQTT on this connection
        self._backlog_end = 0
        self._connected = False
        self._tokens = 0.0
        self._refilled = time.monotonic()
        self._full = False
        self._acked: deque[tuple[float, list[int]]] = deque()  # kept KEEP_ACKED_S, then deleted
        self._kept = 0

    # --- what happens: a batch read from the port, transport events -------------------
    @property
    def spool(self) -> Spool | None:
        return self.storage.spool

    def put(
        self,
        messages: Iterable[tuple[str, bytes]],
        seen: Iterable[Seen] = (),
        marks: dict[str, Mark] | None = None,
    ) -> bool:
        """Commit a batch with its readings' identities and marks; False if not stored."""
        batch = list(messages)
        if not batch and not marks:
            return True
        spool = self.storage.spool
        if spool is None or not self.storage.due(time.monotonic()):
            self._not_stored(len(batch))
            return False
        if spool.size + batch_bytes(batch) > spool.max_bytes:
            self._forget_acked(float("inf"))  # kept copies give way before unsent readings
        try:
            dropped = spool.append(batch, seen, marks)
        except SpoolError as exc:
            self.storage.failed(exc)
            self._not_stored(len(batch))
            return False
        self.storage.succeeded()
        self.counters.inc("spooled", n=len(batch))
        if dropped.rows:
            self.counters.inc("dropped", "spool_full", dropped.rows)
            if self.on_dropped is not None:
                self.on_dropped(_dropped_gaps(dropped))
        if bool(dropped.rows) != self._full:  # log the change, not every batch while full
            self._full = bool(dropped.rows)
            level = logging.WARNING if dropped.rows else logging.INFO
            changed(
                log,
                "spool_full" if dropped.rows else "spool_has_room",
                level,
                spool=spool.path,
                max_bytes=spool.max_bytes,
                dropped_total=self.counters.get("dropped", "spool_full"),
            )
        return True

    def _not_stored(self, n: int) -> None:
        if n:
            self.counters.inc("not_stored", self.storage.problem or "unavailable", n)

    def reset(self) -> None:
        """A new spool file replaced the old one: its row ids start again."""
        self._switch(self._connected)

    def connected(self) -> None:
        self._events.append(_CONNECTED)

    def disconnected(self) -> None:
        self._events.append(_DISCONNECTED)

    def acked(self, mid: int) -> None:
        self._events.append(mid)

    # --- the bridge's loop ---------------------------------------------------------------
    @property
    def draining(self) -> bool:
        """Sending a backlog at the paced rate: call ``step`` often (every DRAIN_TICK_S)."""
        return self._connected and self._cursor < self._backlog_end

    def step(self) -> None:
        """Handle queued events, delete what was acknowledged, send what the window allows."""
        acked: list[int] = []
        while self._events:
            event = self._events.popleft()
            if isinstance(event, int):
                row_id = self._inflight.pop(event, None)
                if row_id is not None:
                    acked.append(row_id)
            else:
                if acked:  # acks of the old connection stand
                    self._delete(acked)
                    acked = []
                self._switch(event == _CONNECTED)
        if acked:
            self._delete(acked)
        self._forget_acked(time.monotonic() - self.keep_acked_s)
        if self._connected:
            self._fill()

    def _delete(self, row_ids: list[int]) -> None:
        self.counters.inc("published", n=len(row_ids))
        self._acked.append((time.monotonic(), row_ids))
        self._kept += len(row_ids)

    def _forget_acked(self, before: float) -> None:
        """Delete the rows acknowledged before ``before``."""
        old: list[int] = []
        while self._acked and self._acked[0][0] <= before:
            old += self._acked.popleft()[1]
        if not old:
            return
        self._kept -= len(old)
        spool = self.storage.spool
        if spool is None:
            return
        try:
            spool.delete(old)
        except SpoolError as exc:  # they stay, and are sent again: at least once
            self.storage.failed(exc)
            return
        self.storage.succeeded()

    def _switch(self, connected: bool) -> None:
        self._connected = connected
        self._inflight.clear()  # the transport dropped its unacknowledged messages
        self._cursor = 0  # from the oldest row: the acknowledged ones kept are sent again
        if connected:
            self._acked.clear()  # each is acknowledged (and kept) anew
            self._kept = 0
        spool = self.storage.spool
        if connected and spool is not None:
            try:
                self._backlog_end = spool.last_id()
            except SpoolError as exc:
                self.storage.failed(exc)
                self._backlog_end = 0
            self._tokens = 0.0
            self._refilled = time.monotonic()
            if spool.rows:
                changed(log, "spool_draining", rows=spool.rows, rate=self.drain_rate)

    def _fill(self) -> None:
        spool = self.storage.spool
        room = self.window - len(self._inflight)
        if room <= 0 or spool is None:
            return
        if self._cursor < self._backlog_end:
            room = min(room, self._take_tokens(room))
            if room <= 0:
                return
        try:
            rows = spool.after(self._cursor, room)
        except SpoolError as exc:
            self.storage.failed(exc)
            return
        for row_id, topic, payload in rows:
            if row_id <= self._backlog_end:
                self.counters.inc("replayed")
            mid = self.send(topic, payload)
            if mid is None:  # the connection went away under us; wait for the event
                return
            self._inflight[mid] = row_id
            self._cursor = row_id

    def _take_tokens(self, wanted: int) -> int:
        now = time.monotonic()
        burst = max(1.0, self.drain_rate * DRAIN_TICK_S * 2)
        self._tokens = min(burst, self._tokens + (now - self._refilled) * self.drain_rate)
        self._refilled = now
        taken = min(wanted, int(self._tokens))
        self._tokens -= taken
        return taken

    @property
    def backlog(self) -> int:
        spool = self.storage.spool
        return 0 if spool is None else spool.rows - self._kept

    def idle(self) -> bool:
        """Nothing waiting and nothing in flight (for tests and a clean shutdown)."""
        return not self._inflight and self.backlog == 0
