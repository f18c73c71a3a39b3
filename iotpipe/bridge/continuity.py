"""Each board's readings as one unbroken series: no silent gap, no duplicate, across kills.

Policy, no I/O. Per device the *mark* (kept in the spool, committed in the same
transaction as the readings) says up to which seq of which boot every reading is committed
or was reported missing; readings committed above it wait in ``above`` until the hole
below them is filled or reported. A hole — after a restart, after the spool could not be
written, or a jump within a run — makes the bridge ask the board to ``replay`` what came
after the mark (``docs/protocol.md``); replayed readings it already has are dropped by
(device, boot, seq), and one whose line differs from the committed one is a conflict
(counted, logged, the first kept). When the board answers, whatever is still missing is
reported: ``beyond_ring`` for what the board says it no longer holds, ``board`` for the
rest (lost on the wire). A board that cannot replay (older firmware) or does not answer
gets its holes reported with where they came from: ``bridge_restart``, ``spool_full`` or
``board``.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iotpipe import wire
from iotpipe.bridge.spool import SEEN_MAX, Identity, Mark, Seen
from iotpipe.bridge.statelog import changed
from iotpipe.counters import Counters

log = logging.getLogger(__name__)

REPLAY_ID = "iotpipe-bridge-replay"
RETRY_S = 1.0  # after "a replay is running": the board finishes the earlier one first
REPLAY_QUIET_S = 5.0  # no line for this long while a replay is asked: it is not coming
NEW, DUPLICATE, CONFLICT = "new", "duplicate", "conflict"
RESTART, SPOOL_FULL, BOARD, BEYOND_RING = "bridge_restart", "spool_full", "board", "beyond_ring"
_UNKNOWN = ""  # a device no mark names: what came before its first reading is not ours
SeqDigest = tuple[int, int]  # a reading of a board already known, as admit_many takes it


@dataclass(frozen=True, slots=True)
class Gap:
    device: str
    boot: str
    first: int
    last: int
    where: str

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass(slots=True)
class _Replay:
    id: str
    boot: str | None
    after: int
    deadline: float  # moved on by every reading while the replay runs: not frozen


def _holes(mark: int, held: list[int], top: int) -> list[tuple[int, int]]:
    """The (first, last) runs of seqs above ``mark`` up to ``top`` that are not in ``held``."""
    out: list[tuple[int, int]] = []
    expected = mark + 1
    for seq in [*held, top + 1]:
        if seq > expected:
            out.append((expected, seq - 1))
        expected = max(expected, seq + 1)
    return out


class Continuity:
    def __init__(self, counters: Counters, write: Callable[[bytes], None]) -> None:
        self.counters = counters
        self.write = write
        self.marks: dict[str, Mark] = {}
        self.above: dict[str, set[int]] = {}
        self.seen: OrderedDict[Identity, int] = OrderedDict()
        self.origin: dict[str, str] = {}  # where the next hole of a device comes from
        self.hole_origin: dict[str, str] = {}
        self.gaps: list[Gap] = []  # found, not yet committed with their event
        self.dirty: set[str] = set()  # devices whose mark changed since the last commit
        self.storing = True
        self.replay: _Replay | None = None
        self._prefix = f"{REPLAY_ID}-{os.urandom(2).hex()}"
        self._numbers = itertools.count(1)
        self._saved: tuple[Any, ...] | None = None
        self._retry_at = 0.0
        self._added: list[Identity] = []

    # --- state from and to the spool --------------------------------------------------
    def load(self, marks: dict[str, Mark], seen: list[Seen], origin: str = RESTART) -> None:
        self.marks = dict(marks)
        self.seen = OrderedDict((s.identity, s.digest) for s in seen)
        self.above = {device: set() for device in self.marks}
        for device, boot, seq in self.seen:
            mark = self.marks.get(device)
            if mark is not None and boot == mark.boot and seq > mark.seq:
                self.above[device].add(seq)
        self.origin = dict.fromkeys(self.marks, origin)
        self.hole_origin = {d: origin for d, above in self.above.items() if above}
        self.gaps.clear()
        self.dirty.clear()
        self.replay = None

    def begin(self) -> None:
        """Before a batch: what ``rollback`` returns to if its commit fails."""
        self._saved = (
            dict(self.marks),
            {d: set(a) for d, a in self.above.items()},
            dict(self.origin),
            dict(self.hole_origin),
            set(self.dirty),
            self.replay,
        )
        self._added = []

    def committed(self) -> None:
        self.gaps.clear()
        self.dirty.clear()
        self._saved = None

    def rollback(self, origin: str) -> None:
        """The batch was not stored: forget it; its readings come back in a replay."""
        if self._saved is not None:
            marks, above, self.origin, self.hole_origin, self.dirty, _ = self._saved
            self.marks, self.above = marks, above
            for identity in self._added:
                self.seen.pop(identity, None)
        self.gaps.clear()
        self.replay = None  # its answer would be judged against a mark that did not move
        for device in self.marks:
            self.origin[device] = origin
        self._saved = None

    def pending_marks(self) -> dict[str, Mark]:
        return {d: self.marks[d] for d in self.dirty if d in self.marks}

    def staged_seen(self) -> list[Seen]:
        return [Seen(i, self.seen[i]) for i in self._added if i in self.seen]

    # --- readings -------------------------------------------------------------------
    def admit(self, device: str, boot: str, seq: int, digest: int, now: float) -> str:
        """NEW (store it), DUPLICATE (drop it) or CONFLICT (drop it, it differs)."""
        if self.replay is not None:  # a long replay keeps its request alive
            self.replay.deadline = now + REPLAY_QUIET_S
        key = (device, boot, seq)
        known = self.seen.get(key)
        if known is not None:
            return DUPLICATE if known == digest else self._conflict(key)
        mark = self.marks.get(device)
        if mark is None or mark.boot != boot:  # a board not seen before, or one that rebooted
            if mark is not None and self.above.get(device):
                self._give_up(device)  # the old boot's holes: its ring went with it
            mark = Mark(boot, -1)
            self.marks[device] = mark
            self.above[device] = set()
            if device not in self.origin:
                self.origin[device] = _UNKNOWN
        elif seq <= mark.seq:
            return DUPLICATE  # older than the identities kept: had, or reported missing
        self._remember(key, digest)
        self.dirty.add(device)
        above = self.above.setdefault(device, set())
        if seq == mark.seq + 1:
            top = seq
            while top + 1 in above:
                above.discard(top + 1)
                top += 1
            self.marks[device] = Mark(boot, top)
        else:
            if not above:
                self.hole_origin[device] = self.origin.get(device, BOARD)
            above.add(seq)
            if self.replay is None and now >= self._retry_at:
                self.ask(device, now)
            elif len(above) > SEEN_MAX:
                self._give_up(device)
        self.origin[device] = BOARD
        return NEW

    def admit_many(
        self, device: str, boot: str, readings: list[SeqDigest], now: float
    ) -> list[str]:
        """``admit`` for readings of one board in the order read, (seq, digest) each.

        The usual reading is the one after the mark, with nothing held above it: for a
        run of those only the identity is remembered, and the mark moves once at the end,
        not once per reading. Any other reading goes through ``admit`` itself."""
        verdicts: list[str] = []
        if readings and self.replay is not None:  # a long replay keeps its request alive
            self.replay.deadline = now + REPLAY_QUIET_S
        seen = self.seen
        top = self._in_order(device, boot)  # the mark's seq, if the next may come in order
        for seq, digest in readings:
            key = (device, boot, seq)
            if top is not None and seq == top + 1 and key not in seen:
                self._remember(key, digest)
                top = seq
                verdicts.append(NEW)
                continue
            if top is not None:
                self._move_mark(device, boot, top)
            verdicts.append(self.admit(device, boot, seq, digest, now))
            top = self._in_order(device, boot)
        if top is not None:
            self._move_mark(device, boot, top)
        return verdicts

    def _in_order(self, device: str, boot: str) -> int | None:
        mark = self.marks.get(device)
        if mark is None or mark.boot != boot or self.above.get(device):
            return None
        return mark.seq

    def _move_mark(self, device: str, boot: str, top: int) -> None:
        """What ``admit`` does for the readings after the mark, once for a run of them."""
        if top == self.marks[device].seq:
            return
        self.dirty.add(device)
        self.above.setdefault(device, set())
        self.marks[device] = Mark(boot, top)
        self.origin[device] = BOARD

    def _remember(self, key: Identity, digest: int) -> None:
        self.seen[key] = digest
        self._added.append(key)
        if len(self.seen) > SEEN_MAX:
            self.seen.popitem(last=False)

    def _conflict(self, key: Identity) -> str:
        self.counters.inc("conflicts")
        count = self.counters.get("conflicts")
        if count in (1, 10, 100, 1000, 10_000, 100_000):
            device, boot, seq = key
            changed(
                log,
                "reading_conflict",
                logging.WARNING,
                device=device,
                boot=boot,
                seq=seq,
                conflicts=count,
                kept="the first one committed",
            )
        return CONFLICT

    # --- replay -----------------------------------------------------------------------
    def ask(self, device: str | None, now: float) -> None:
        """Ask the board for what came after the mark (all it holds if there is none)."""
        if not self.storing:
            return
        mark = self.marks.get(device) if device is not None else None
        command_id = f"{self._prefix}-{next(self._numbers)}"
        boot, after = (mark.boot, mark.seq) if mark is not None else (None, -1)
        self.replay = _Replay(command_id, boot, after, now + REPLAY_QUIET_S)
        self.counters.inc("replays_asked")
        log.debug("asking %s for a replay of boot %s after %d", device, boot, after)
        self.write(wire.encode_replay(command_id, boot, after))

    def is_replay(self, answer_id: str | None) -> bool:
        return answer_id is not None and answer_id.startswith(REPLAY_ID)

    def answered(self, answer: wire.Answer, device: str | None, now: float) -> None:
        replay = self.replay
        if replay is None or answer.id != replay.id or device is None:
            return  # an old request's, or asked while the spool could not store
        self.replay = None
        if not answer.ok and "running" in (answer.error or ""):
            self._retry_at = now + RETRY_S  # one asked before a reopen is still going
            return
        if not answer.ok:
            changed(log, "replay_unavailable", device=device, error=answer.error)
            self.counters.inc("replays_failed", "refused")
            self._give_up(device)
            return
        try:
            result = wire.replayed_from_answer(answer)
        except wire.LineRejected as exc:
            self.counters.inc("replays_failed", exc.reason)
            self._give_up(device)
            return
        self.counters.inc("replays_answered")
        self.counters.inc("replayed_by_board", n=result.sent)
        mark = self.marks.get(device)
        if mark is None or mark.boot != result.boot:
            mark = Mark(result.boot, -1)  # nothing of this boot came yet
            self.marks[device] = mark
            self.above[device] = set()
        after = replay.after if replay.boot == result.boot else -1
        newest = after + result.missing if result.first is None else result.first + result.sent - 1
        self._resolve(device, mark.boot, newest, result.missing, BOARD)

    def expire(self, now: float, device: str | None) -> None:
        replay = self.replay
        if replay is not None and now >= replay.deadline:
            self.replay = None
            self.counters.inc("replays_failed", "timeout")
            changed(log, "replay_unanswered", logging.WARNING, device=device)
            if device is not None:
                self._give_up(device)

    def _give_up(self, device: str) -> None:
        """No replay: what is still missing is reported with where its hole came from."""
        mark = self.marks.get(device)
        if mark is not None:
            where = self.hole_origin.get(device, BOARD)
            self._resolve(device, mark.boot, -1, 0, where)

    def _resolve(self, device: str, boot: str, newest: int, beyond: int, rest: str) -> None:
        """Everything up to the newest reading known is now committed or reported: the
        oldest ``beyond`` of the seqs still missing as ``beyond_ring`` (the board said it
        no longer holds that many), the others as ``rest``."""
        mark = self.marks[device]
        above = self.above.get(device, set())
        top = max([mark.seq, newest, *above])
        for first, last in _holes(mark.seq, sorted(above), top):
            cut = min(last, first + beyond - 1)
            if cut >= first:
                self._gap(Gap(device, boot, first, cut, BEYOND_RING))
                beyond -= cut - first + 1
            if last > cut:
                self._gap(Gap(device, boot, max(first, cut + 1), last, rest))
        self.marks[device] = Mark(boot, top)
        self.above[device] = set()
        self.hole_origin.pop(device, None)
        self.dirty.add(device)

    def _gap(self, gap: Gap) -> None:
        if gap.where == _UNKNOWN:
            return  # before the first reading of a board no bridge had seen
        self.gaps.append(gap)
        count_and_log(self.counters, gap)


def count_and_log(counters: Counters, gap: Gap) -> None:
    """Every gap, wherever it was found, is counted and logged the same way."""
    counters.inc("gaps", gap.where)
    counters.inc("missing", gap.where, gap.count)
    changed(
        log,
        "readings_missing",
        logging.WARNING,
        device=gap.device,
        boot=gap.boot,
        first=gap.first,
        last=gap.last,
        count=gap.count,
        where=gap.where,
    )
