"""Delivery of alert notifications through Apprise, off the ingest path.

``Notifier.send`` only puts a message in a bounded queue; one thread of its own sends it.
A destination that fails is retried with exponential backoff until ``retry_for`` seconds
have passed since the first try, then the message is given up. Each outcome is counted
(``alert_sent``, ``alert_failed{retrying|gave_up}``, ``alert_dropped{queue_full}``), and a
destination's state (ok ↔ failing) is logged once per change and shown on the page. URLs
carry secrets: only :func:`masked` forms of them are ever logged or shown.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import apprise

from iotpipe.counters import Counters
from iotpipe.dashboard.alert_rules import Destination

log = logging.getLogger(__name__)

QUEUE_LIMIT = 1000
FIRST_RETRY_S = 2.0
MAX_BACKOFF_S = 300.0
SEND_TIMEOUT_S = 15


def masked(url: str) -> str:
    """The URL in Apprise's privacy form (passwords and tokens shortened) and without its
    path and query, which for ntfy, webhooks and chat services are secrets too."""
    a = apprise.Apprise()
    if not a.add(url):
        return url.split("://")[0] + "://***"
    parts = urlsplit(str(a.urls(privacy=True)[0]))
    return f"{parts.scheme}://{parts.netloc}" + ("/…" if parts.path.strip("/") else "")


def send_now(url: str, title: str, body: str) -> bool:
    """One attempt; True when the destination accepted it."""
    a = apprise.Apprise()
    if not a.add(url):
        return False
    # Plain text in: the lines stay lines (an HTML email would join them into one).
    return bool(a.notify(body=body, title=title, body_format=apprise.NotifyFormat.TEXT))


@dataclass(order=True)
class _Job:
    due: float
    order: int
    dest: Destination = field(compare=False)
    title: str = field(compare=False)
    body: str = field(compare=False)
    first: float = field(compare=False)
    tries: int = field(compare=False, default=0)


@dataclass
class DestinationState:
    name: str
    url: str  # masked
    ok: bool = True
    since: float = field(default_factory=time.time)
    failures: int = 0
    sent: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "ok": self.ok, "since": self.since,
                "failures": self.failures, "sent": self.sent}  # fmt: skip


class Notifier:
    def __init__(self, counters: Counters, retry_for: float) -> None:
        self.counters = counters
        self.retry_for = retry_for
        self._jobs: list[_Job] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._states: dict[str, DestinationState] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="alert-notifier", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(SEND_TIMEOUT_S + 5)

    def send(self, dest: Destination, title: str, body: str) -> None:
        now = time.time()
        with self._cond:
            if len(self._jobs) >= QUEUE_LIMIT:
                self.counters.inc("alert_dropped", "queue_full")
                log.warning("alert queue full (%d): dropped one for %s", QUEUE_LIMIT, dest.name)
                return
            heapq.heappush(self._jobs, _Job(now, next(self._order), dest, title, body, now))
            self._state(dest)
            self._cond.notify()

    def states(self) -> list[dict[str, Any]]:
        with self._cond:
            return [s.to_json() for s in self._states.values()]

    def pending(self) -> int:
        with self._cond:
            return len(self._jobs)

    def _state(self, dest: Destination) -> DestinationState:
        found = self._states.get(dest.name)
        if found is None:
            found = self._states[dest.name] = DestinationState(dest.name, masked(dest.url))
        return found

    def _next(self) -> _Job | None:
        with self._cond:
            while not self._stopping:
                if self._jobs and self._jobs[0].due <= time.time():
                    return heapq.heappop(self._jobs)
                wait = self._jobs[0].due - time.time() if self._jobs else None
                self._cond.wait(wait)
            return None

    def _run(self) -> None:
        while (job := self._next()) is not None:
            try:
                ok = send_now(job.dest.url, job.title, job.body)
            except Exception:  # a daemon logs and carries on; the library's own failure
                log.debug("apprise raised for %s", job.dest.name, exc_info=True)
                ok = False
            self._after(job, ok)

    def _after(self, job: _Job, ok: bool) -> None:
        now = time.time()
        with self._cond:
            state = self._state(job.dest)
            if ok:
                self.counters.inc("alert_sent")
                state.sent += 1
                if not state.ok:
                    log.info("alert destination %s works again (%s)", state.name, state.url)
                    state.ok, state.since = True, now
                return
            state.failures += 1
            if state.ok:
                log.warning("alert destination %s fails (%s); retrying", state.name, state.url)
                state.ok, state.since = False, now
            job.tries += 1
            delay = min(FIRST_RETRY_S * 2 ** (job.tries - 1), MAX_BACKOFF_S)
            if now + delay - job.first > self.retry_for:
                self.counters.inc("alert_failed", "gave_up")
                log.debug("gave up a notification to %s after %d tries", state.name, job.tries)
                return
            self.counters.inc("alert_failed", "retrying")
            job.due = now + delay
            heapq.heappush(self._jobs, job)
