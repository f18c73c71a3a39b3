"""The one thread that writes to the store: batches from a bounded queue.

Ingest (paho's network thread) only validates and enqueues. When the writer falls
``QUEUE_LIMIT`` readings behind, ingest waits for room instead of dropping what the broker
has handed over: it reads nothing more meanwhile, so the rest stays in our session. The
writer takes whatever has queued up — one reading when idle, a few thousand under load —
and commits it as one transaction, which is both what keeps latency low at 1 reading/s
and what makes 20,000 readings/s possible. Only after the commit are the new readings
announced (live stream, alerts), so what the page shows is already stored.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from iotpipe.dashboard.payloads import MetaUpdate, StatusUpdate
from iotpipe.dashboard.store import Store

from iotpipe.counters import Counters
from iotpipe.topics import Telemetry

log = logging.getLogger(__name__)

QUEUE_LIMIT = 20_000
FULL_WAIT_S = 5.0
"""How long ingest waits for room in a full queue before it drops a reading: while it
waits it reads nothing more, so the broker keeps the rest in our session."""
BATCH_LIMIT = 5_000
GATHER_S = 0.002
"""When a batch starts small, wait this long once for more: under load it turns hundreds of
tiny transactions into a few large ones, and idle it adds only 2 ms to the live latency."""
GATHER_BELOW = 50
PRUNE_EVERY_S = 600.0

Item = Telemetry | StatusUpdate | MetaUpdate


@dataclass(frozen=True, slots=True)
class Retention:
    max_age_s: float | None  # None: keep by age forever
    keep_per_series: int


class Writer:
    def __init__(
        self,
        store: Store,
        counters: Counters,
        retention: Retention,
        announce: Callable[[list[Item]], None],
    ) -> None:
        self.store = store
        self.counters = counters
        self.retention = retention
        self.announce = announce
        # SimpleQueue is C code without a lock around each put: ingest's hot path. Its
        # bound is kept by put() below.
        self.queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._next_prune = 0.0
        # Shared contract 4: told after every attempt whether the store could write.
        self.store_health: Callable[[bool, str], None] = lambda ok, reason: None

    def start(self) -> None:
        self._thread.start()

    def put(self, item: Item) -> None:
        if self.queue.qsize() >= QUEUE_LIMIT and not self._room():
            self.counters.inc("dropped", "writer_queue_full")
            log.warning("store writer is %d items behind: dropped one", QUEUE_LIMIT)
            return
        self.queue.put(item)

    def _room(self) -> bool:
        """Wait (a little at a time) until the writer has caught up; False if it has not."""
        deadline = time.monotonic() + FULL_WAIT_S
        while time.monotonic() < deadline:
            time.sleep(0.001)
            if self.queue.qsize() < QUEUE_LIMIT:
                return True
        return False

    def stop(self) -> None:
        """Write what is queued, then end the thread."""
        self.queue.put(None)
        self._thread.join(30)

    def _take(self) -> tuple[list[Item], bool]:
        first = self.queue.get(timeout=1.0)
        if first is None:
            return [], True
        batch = [first]
        gathered = False
        while len(batch) < BATCH_LIMIT:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                if gathered or len(batch) >= GATHER_BELOW:
                    break
                gathered = True
                time.sleep(GATHER_S)
                continue
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self) -> None:
        done = False
        while not done:
            try:
                batch, done = self._take()
            except queue.Empty:
                batch = []
            try:
                if batch:
                    self._write(batch)
                self._maybe_prune()
            except Exception as exc:  # a daemon logs and carries on; the batch is lost, counted
                self.counters.inc("dropped", "store_error", len(batch))
                log.exception("could not write %d items to the store", len(batch))
                self.store_health(False, str(exc)[:200] or type(exc).__name__)
            else:
                if batch:  # an idle pass wrote nothing, so it proves nothing
                    self.store_health(True, "")

    def _write(self, batch: list[Item]) -> None:
        readings = [i for i in batch if isinstance(i, Telemetry)]
        fresh: list[Item] = list(self.store.write(readings)) if readings else []
        self.counters.inc("stored", n=len(fresh))
        self.counters.inc("batches")
        self.counters.inc("duplicates", n=len(readings) - len(fresh))
        for item in batch:
            if isinstance(item, StatusUpdate):
                self.store.set_status(item.device, item.status)
                fresh.append(item)
            elif isinstance(item, MetaUpdate):
                self.store.set_meta(item.device, item.meta)
                fresh.append(item)
        if fresh:
            self.announce(fresh)

    def _maybe_prune(self) -> None:
        now = time.time()
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY_S
        age = self.retention.max_age_s
        before = now - age if age is not None else float("-inf")
        dropped = self.store.prune(before, self.retention.keep_per_series)
        if dropped:
            self.counters.inc("pruned", n=dropped)
            log.info("pruned %d old samples", dropped)
