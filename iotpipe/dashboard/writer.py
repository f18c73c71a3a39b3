"""The one thread that writes to the store: batches from a bounded queue, acknowledged
to the broker only once committed.

Ingest (paho's network thread) only validates and enqueues each message with its
acknowledgement token; a message it rejected is enqueued without an item, so that every
acknowledgement goes out in the order the messages came, as MQTT requires. The writer takes
whatever has queued up — one reading when idle, a few thousand under load — commits it as
one transaction, then acknowledges the batch and announces what is new (live stream,
alerts), so what the page shows is already stored and what the broker forgets is already on
disk.

When a commit fails (disk full, damaged file, PostgreSQL gone) the store is
``cannot_write``: the writer keeps the batch, acknowledges nothing and tries again with a
backoff. Unacknowledged readings stay in our broker session, and once the broker's in-flight
window (its ``max_inflight_messages``, see ``ingest``) is full it sends no more, so nothing
piles up here.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from iotpipe.counters import Counters
from iotpipe.dashboard.payloads import MetaUpdate, StatusUpdate
from iotpipe.dashboard.store import Store, Written
from iotpipe.topics import Telemetry

log = logging.getLogger(__name__)

QUEUE_LIMIT = 20_000
"""A backstop above the in-flight window: only QoS 0 messages can reach it, and ingest then
waits for room (reading nothing more) instead of dropping."""
BATCH_LIMIT = 5_000
GATHER_S = 0.002
"""When a batch starts small, wait this long once for more: under load it turns hundreds of
tiny transactions into a few large ones, and idle it adds only 2 ms to the live latency."""
GATHER_BELOW = 50
PRUNE_EVERY_S = 600.0
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
"""Backoff between attempts to commit a batch while the store cannot write."""

Item = Telemetry | StatusUpdate | MetaUpdate
Token = tuple[int, int, int]
"""What ingest needs to acknowledge a message: (connection, packet id, QoS); QoS 0 needs
no acknowledgement."""
NO_ACK: Token = (0, 0, 0)
_STOP = object()


@dataclass(frozen=True, slots=True)
class Retention:
    max_age_s: float | None  # None: keep by age forever
    keep_per_series: int


@dataclass(frozen=True, slots=True)
class Health:
    """The store's state as the writer last found it: ``ok`` or ``cannot_write``."""

    state: str
    reason: str = ""
    since: float = 0.0  # Unix time of the change

    @property
    def ok(self) -> bool:
        return self.state == "ok"


class Writer:
    def __init__(
        self,
        store: Store,
        counters: Counters,
        retention: Retention,
        announce: Callable[[list[Item]], None],
        ack: Callable[[list[Token]], None] = lambda tokens: None,
    ) -> None:
        self.store = store
        self.counters = counters
        self.retention = retention
        self.announce = announce
        self.ack = ack
        # SimpleQueue is C code without a lock around each put: ingest's hot path. Its
        # bound is kept by put() below.
        self.queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.health = Health("ok", since=time.time())
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._stopping = threading.Event()
        self._next_prune = 0.0
        # Told each time the store's health changes (the alert rule "store cannot write").
        self.on_health: Callable[[bool, str], None] = lambda ok, reason: None

    def start(self) -> None:
        self._thread.start()

    def put(self, item: Item | None, token: Token = NO_ACK) -> None:
        """Queue ``item`` (None: nothing to store) to be acknowledged by ``token``."""
        while self.queue.qsize() >= QUEUE_LIMIT and not self._stopping.is_set():
            time.sleep(0.001)  # reading nothing meanwhile: the rest stays in our session
        self.queue.put((item, token))

    def stop(self) -> None:
        """Write what is queued, then end the thread (at once if the store cannot write:
        what was not acknowledged stays in the broker session)."""
        self._stopping.set()
        self.queue.put(_STOP)
        self._thread.join(30)

    def _take(self) -> tuple[list[tuple[Item | None, Token]], bool]:
        first = self.queue.get(timeout=1.0)
        if first is _STOP:
            return [], True
        batch = [first]
        gathered = False
        while len(batch) < BATCH_LIMIT:
            try:
                entry = self.queue.get_nowait()
            except queue.Empty:
                if gathered or len(batch) >= GATHER_BELOW:
                    break
                gathered = True
                time.sleep(GATHER_S)
                continue
            if entry is _STOP:
                return batch, True  # type: ignore[return-value]
            batch.append(entry)
        return batch, False  # type: ignore[return-value]

    def _run(self) -> None:
        done = False
        while not done:
            try:
                batch, done = self._take()
            except queue.Empty:
                batch = []
            if batch:
                self._commit(batch)
            try:
                self._maybe_prune()
            except Exception as exc:  # a daemon logs and carries on; pruning comes again
                self.counters.inc("store_errors", "prune")
                log.warning("could not prune the history: %s", exc)

    def _commit(self, batch: list[tuple[Item | None, Token]]) -> None:
        """Write ``batch`` until it is committed, then acknowledge and announce it."""
        items = [item for item, _ in batch if item is not None]
        delay = RETRY_FIRST_S
        while True:
            try:
                fresh = self._write(items)
                break
            except Exception as exc:
                self._cannot_write(exc)
                if self._stopping.wait(delay):
                    return  # not acknowledged: the broker delivers it again
                delay = min(delay * 2, RETRY_MAX_S)
        if not self.health.ok:
            log.warning("history store writes again after %.0f s", time.time() - self.health.since)
            self.health = Health("ok", since=time.time())
            self.on_health(True, "")
        self.ack([token for _, token in batch])
        if fresh:
            self.announce(fresh)

    def _cannot_write(self, exc: Exception) -> None:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        self.counters.inc("store_errors", _reason_key(exc, reason))
        if self.health.ok:
            log.error(
                "history store cannot write (%s): taking no more readings, they wait in "
                "the broker session; retrying",
                reason,
            )
            self.health = Health("cannot_write", reason, time.time())
            self.on_health(False, reason)
        elif reason != self.health.reason:
            self.health = Health("cannot_write", reason, self.health.since)

    def _write(self, batch: list[Item]) -> list[Item]:
        readings = [i for i in batch if isinstance(i, Telemetry)]
        written = self.store.write(readings) if readings else Written()
        fresh: list[Item] = list(written)
        for item in batch:
            if isinstance(item, StatusUpdate):
                self.store.set_status(item.device, item.status)
                fresh.append(item)
            elif isinstance(item, MetaUpdate):
                self.store.set_meta(item.device, item.meta)
                fresh.append(item)
        self.counters.inc("stored", n=len(written))
        self.counters.inc("batches")
        self.counters.inc("duplicates", n=len(readings) - len(written) - len(written.refused))
        for r, reason in written.refused:
            self.counters.inc("rejected", reason)
            log.warning("refused %s boot %s seq %d: %s", r.device, r.boot, r.seq, reason)
        for _, reason in written.flagged:
            self.counters.inc("flagged", reason)
        return fresh

    def _maybe_prune(self) -> None:
        now = time.time()
        if now < self._next_prune or not self.health.ok:
            return
        self._next_prune = now + PRUNE_EVERY_S
        age = self.retention.max_age_s
        before = now - age if age is not None else float("-inf")
        dropped = self.store.prune(before, self.retention.keep_per_series)
        if dropped:
            self.counters.inc("pruned", n=dropped)
            log.info("pruned %d old samples", dropped)


def _reason_key(exc: Exception, text: str) -> str:
    """A short, stable counter label for why the store could not write."""
    lowered = text.lower()
    if "full" in lowered or "no space" in lowered:
        return "disk_full"
    if "malformed" in lowered or "not a database" in lowered or "corrupt" in lowered:
        return "damaged"
    if type(exc).__module__.startswith("psycopg"):
        return "database_unreachable"
    return type(exc).__name__.lower()
