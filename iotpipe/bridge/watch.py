"""What the bridge watches in the stream itself: a board gone quiet (gaps in seq are
``continuity``'s)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

QUIET_INTERVALS = 3
QUIET_SLACK_S = 2.0
DEFAULT_INTERVAL_S = 5.0


class Liveness:
    """A board is quiet when no line came for a few of its reading intervals."""

    def __init__(self) -> None:
        self.interval_s = DEFAULT_INTERVAL_S
        self.last_line = 0.0

    def heard(self, now: float) -> None:
        self.last_line = now

    def quiet(self, now: float) -> bool:
        return now - self.last_line > QUIET_INTERVALS * self.interval_s + QUIET_SLACK_S
