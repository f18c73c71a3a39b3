"""Named counters shared by a daemon's threads; ``iotpipe.exposition`` renders them."""

from __future__ import annotations

import threading
from collections import Counter


class Counters:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._values: Counter[tuple[str, str]] = Counter()

    def inc(self, name: str, reason: str = "", n: int = 1) -> None:
        with self._lock:
            self._values[(name, reason)] += n

    def get(self, name: str, reason: str = "") -> int:
        with self._lock:
            return self._values[(name, reason)]

    def total(self, name: str) -> int:
        with self._lock:
            return sum(v for (n, _), v in self._values.items() if n == name)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {f"{n}{{{r}}}" if r else n: v for (n, r), v in sorted(self._values.items())}

    def values(self) -> dict[tuple[str, str], int]:
        """Every (name, reason) counted so far, a copy taken under the lock."""
        with self._lock:
            return dict(self._values)
