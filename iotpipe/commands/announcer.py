"""What `iotpipe announce` publishes, decided from what the broker holds. Pure: no I/O.

A board on Wi-Fi has no bridge to announce it to Home Assistant, and an ESP8266 has no RAM
to spare for discovery payloads, so the host does it on its behalf, from the board's
retained ``meta`` (the same hello the bridge turns into configs). The boards announced
here are the ones with a broker login of their own — exactly the Wi-Fi boards
(`iotpipe board login`); a board whose login is revoked is removed from Home Assistant.

It also tidies up after everyone: an iotpipe config (a bridge's too) for a metric that
its board's current meta no longer lists, or for a board whose meta was cleared, gets an
empty retained config, so Home Assistant drops the entity. Configs of other software are
never touched. Metas must be known before configs are judged: the caller subscribes to
metas first (a broker sends each subscription's retained messages after its SUBACK).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from iotpipe import topics
from iotpipe.mqttwire import discovery
from iotpipe.mqttwire.discovery import Board
from iotpipe.topics import Message, PayloadRejected

log = logging.getLogger(__name__)

MAX_BOARDS = 10_000  # bounded: a flood of junk metas cannot grow memory without end
MAX_CONFIGS = MAX_BOARDS * (4 + 1)  # a few metrics and a button each, on average


class Announcer:
    def __init__(self, base: str, prefix: str) -> None:
        self.base = base
        self.prefix = prefix
        self.metas: dict[str, Board] = {}
        self.wifi: set[str] = set()
        self.announced: dict[str, Board] = {}
        self.seen: dict[str, str] = {}  # config topic → the iotpipe device it is for

    # --- what the broker says ---------------------------------------------------------
    def meta(self, topic: str, payload: bytes) -> list[Message]:
        try:
            device, _kind = topics.split(self.base, topic)
        except topics.PayloadRejected:
            return []
        if not payload:  # the board's meta was cleared: the board is gone
            self.metas.pop(device, None)
            return self._tidy()
        try:
            board = discovery.board_from_meta(payload)
        except PayloadRejected as exc:
            log.warning("ignored the meta on %s: %s", topic, exc)
            return []
        if board.device != device:
            log.warning("ignored the meta on %s: it names %s", topic, board.device)
            return []
        if device not in self.metas and len(self.metas) >= MAX_BOARDS:
            log.warning("ignored the meta on %s: already %d boards known", topic, MAX_BOARDS)
            return []
        self.metas[device] = board
        return self._announce() + self._tidy()

    def config(self, topic: str, payload: bytes) -> list[Message]:
        if discovery.parse_config_topic(self.prefix, topic) is None:
            return []
        device = discovery.config_owner(self.base, payload) if payload else None
        if device is None:
            self.seen.pop(topic, None)
            return []
        if len(self.seen) < MAX_CONFIGS or topic in self.seen:
            self.seen[topic] = device
        return self._tidy()

    def boards(self, wifi: Iterable[str]) -> list[Message]:
        """The devices that have a login of their own now (read from the broker's data)."""
        self.wifi = set(wifi)
        return self._announce() + self._tidy()

    def again(self) -> list[Message]:
        """Home Assistant restarted: every config this announcer made, once more."""
        return [m for b in self.announced.values() for m in self._configs(b, None)]

    # --- decisions --------------------------------------------------------------------
    def _configs(self, board: Board, before: Board | None) -> list[Message]:
        return discovery.configs(board, self.base, None, self.prefix, before)

    def _announce(self) -> list[Message]:
        out: list[Message] = []
        for device in sorted(self.wifi & set(self.metas)):
            board, before = self.metas[device], self.announced.get(device)
            if board != before:
                out += self._configs(board, before)
                self.announced[device] = board
        return out

    def _tidy(self) -> list[Message]:
        """Empty configs for what no current meta (or login, for a Wi-Fi board) backs."""
        stale: list[str] = []
        for device in [d for d in self.announced if d not in self.wifi or d not in self.metas]:
            # Revoked (its meta stays retained, but nobody speaks for it), or its meta gone.
            stale += discovery.announced_topics(self.announced.pop(device), self.prefix)
        for topic in stale:
            self.seen.pop(topic, None)
        for topic, device in self.seen.items():
            board = self.metas.get(device)
            if device in self.announced:
                continue
            if board is None or topic not in discovery.announced_topics(board, self.prefix):
                stale.append(topic)
        stale = sorted(set(stale))
        for topic in stale:
            self.seen.pop(topic, None)
        if stale:
            log.info("removing %d discovery configs no board backs: %s", len(stale), stale[:5])
        return discovery.removals(stale)
