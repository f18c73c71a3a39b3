"""What the bridge watches in the stream itself: gaps in seq, and a board gone quiet."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

QUIET_INTERVALS = 3
QUIET_SLACK_S = 2.0
DEFAULT_INTERVAL_S = 5.0


class GapTracker:
    """Within one boot a board's seq has no gaps; a jump means readings were lost before
    the bridge (a full UART buffer, a cable pulled). Returns the missing (first, last)."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], int] = {}

    def see(self, device: str, boot: str, seq: int) -> tuple[int, int] | None:
        key = (device, boot)
        last = self._last.get(key)
        if last is not None and seq <= last:
            return None  # a repeat or a reordering, not a gap
        if len(self._last) > 64 and key not in self._last:
            self._last.clear()  # bounded: only the current boots matter
        self._last[key] = seq
        if last is not None and seq > last + 1:
            return last + 1, seq - 1
        return None


class Liveness:
    """A board is quiet when no line came for a few of its reading intervals."""

    def __init__(self) -> None:
        self.interval_s = DEFAULT_INTERVAL_S
        self.last_line = 0.0

    def heard(self, now: float) -> None:
        self.last_line = now

    def quiet(self, now: float) -> bool:
        return now - self.last_line > QUIET_INTERVALS * self.interval_s + QUIET_SLACK_S
