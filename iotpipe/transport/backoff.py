"""When to try connecting again: at once, then 1 s, 2 s, … up to 30 s between attempts,
and from 1 s again after a connection that worked."""

from __future__ import annotations

RECONNECT_MIN_S, RECONNECT_MAX_S = 1.0, 30.0


class Backoff:
    def __init__(self, first: float = RECONNECT_MIN_S, most: float = RECONNECT_MAX_S) -> None:
        self.first = first
        self.most = most
        self._delay = first

    def failed(self) -> float:
        """How long to wait after this failure (the next one waits twice as long)."""
        delay = self._delay
        self._delay = min(self._delay * 2, self.most)
        return delay

    def worked(self) -> None:
        self._delay = self.first
