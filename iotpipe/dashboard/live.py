"""Fan-out of live events to Server-Sent Event streams, one bounded queue per client.

A slow browser must never hold up ingest: when a client's queue is full the event is
dropped for that client alone and counted (``sse_dropped``); the page catches up from the
series API when it reconnects or changes range.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any

from iotpipe.counters import Counters

log = logging.getLogger(__name__)

CLIENT_QUEUE = 1_000
KEEPALIVE_S = 15.0
MAX_CLIENTS = 200


class TooManyClients(Exception):
    pass


class Hub:
    def __init__(self, counters: Counters, max_clients: int = MAX_CLIENTS) -> None:
        self.counters = counters
        self.max_clients = max_clients
        self._clients: set[queue.Queue[bytes | None]] = set()
        self._lock = threading.Lock()

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        frame = f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
        with self._lock:
            clients = list(self._clients)
        for q in clients:
            try:
                q.put_nowait(frame)
            except queue.Full:
                self.counters.inc("sse_dropped", event)

    def subscribe(self) -> queue.Queue[bytes | None]:
        q: queue.Queue[bytes | None] = queue.Queue(CLIENT_QUEUE)
        with self._lock:
            if len(self._clients) >= self.max_clients:
                raise TooManyClients(f"{self.max_clients} live streams open already")
            self._clients.add(q)
        return q

    def unsubscribe(self, q: queue.Queue[bytes | None]) -> None:
        with self._lock:
            self._clients.discard(q)

    def close(self) -> None:
        """End every stream (a ``None`` tells its generator to return)."""
        with self._lock:
            clients = list(self._clients)
        for q in clients:
            with contextlib.suppress(queue.Full):
                q.put_nowait(None)

    def stream(self, q: queue.Queue[bytes | None]) -> Iterator[bytes]:
        """The body of one ``text/event-stream`` response."""
        try:
            # retry: how long the browser's EventSource waits before reconnecting.
            yield b"retry: 1000\n: connected\n\n"
            while True:
                try:
                    frame = q.get(timeout=KEEPALIVE_S)
                except queue.Empty:
                    yield b": keep-alive\n\n"
                    continue
                if frame is None:
                    return
                yield frame
        finally:
            self.unsubscribe(q)
