"""No silent gap, no duplicate: the bridge's marks, replays and spool files, without
processes (real SQLite files; the board is the list of lines the policy writes)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from iotpipe import wire
from iotpipe.bridge.continuity import (
    BEYOND_RING,
    BOARD,
    CONFLICT,
    DUPLICATE,
    NEW,
    RESTART,
    Continuity,
    Gap,
)
from iotpipe.bridge.spool import FILE_NAME, Mark, Seen, Spool
from iotpipe.bridge.storage import Storage, damaged_files
from iotpipe.counters import Counters

BOOT = "0a1b2c3d"


class Board:
    """What the policy wrote to the port."""

    def __init__(self) -> None:
        self.lines: list[dict[str, object]] = []

    def write(self, data: bytes) -> None:
        self.lines.extend(json.loads(line) for line in data.splitlines())


def _continuity() -> tuple[Continuity, Board, Counters]:
    board, counters = Board(), Counters("t")
    return Continuity(counters, board.write), board, counters


def _answer(board: Board, **result: object) -> wire.Answer:
    return wire.Answer(str(board.lines[-1]["id"]), True, result=result)


def test_a_restart_gap_is_asked_for_again_and_what_is_beyond_the_ring_is_reported() -> None:
    continuity, board, counters = _continuity()
    continuity.load({"d": Mark(BOOT, 41)}, [], RESTART)
    assert continuity.admit("d", BOOT, 100, 1, now=0) == NEW  # read from the port's buffer
    assert board.lines[-1]["cmd"] == "replay"
    assert board.lines[-1]["args"] == {"boot": BOOT, "after": 41}
    for seq in range(52, 101):  # the ring no longer holds 42-51
        continuity.admit("d", BOOT, seq, 1, now=0)
    continuity.answered(_answer(board, boot=BOOT, sent=49, first=52, missing=10), "d", 0)
    assert continuity.gaps == [Gap("d", BOOT, 42, 51, BEYOND_RING)]
    assert continuity.marks["d"] == Mark(BOOT, 100)
    assert continuity.pending_marks() == {"d": Mark(BOOT, 100)}
    assert counters.get("missing", BEYOND_RING) == 10
    assert counters.get("duplicates") == 0


def test_a_replayed_reading_already_committed_is_dropped_and_one_that_differs_is_a_conflict() -> (
    None
):
    continuity, board, counters = _continuity()
    for seq in range(5):
        assert continuity.admit("d", BOOT, seq, seq, now=0) == NEW
    assert continuity.admit("d", BOOT, 3, 3, now=0) == DUPLICATE
    assert continuity.admit("d", BOOT, 4, 999, now=0) == CONFLICT
    assert counters.get("conflicts") == 1
    assert continuity.marks["d"] == Mark(BOOT, 4) and board.lines == []


def test_a_board_that_cannot_replay_gets_its_restart_gap_reported_exactly() -> None:
    continuity, board, _ = _continuity()
    continuity.load({"d": Mark(BOOT, 9)}, [], RESTART)
    continuity.admit("d", BOOT, 15, 1, now=0)
    refusal = wire.Answer(str(board.lines[-1]["id"]), False, error="unknown cmd")
    continuity.answered(refusal, "d", now=0)
    assert continuity.gaps == [Gap("d", BOOT, 10, 14, RESTART)]
    continuity.committed()
    continuity.admit("d", BOOT, 17, 1, now=1)  # a jump within the run: where=board
    continuity.expire(now=1000, device="d")  # the second replay is never answered
    assert continuity.gaps == [Gap("d", BOOT, 16, 16, BOARD)]


def test_a_batch_that_could_not_be_stored_is_forgotten_and_asked_again() -> None:
    continuity, board, _ = _continuity()
    continuity.load({"d": Mark(BOOT, 9)}, [], RESTART)
    continuity.begin()
    continuity.admit("d", BOOT, 10, 1, now=0)
    continuity.rollback("spool_full")
    assert continuity.marks["d"] == Mark(BOOT, 9) and continuity.replay is None
    continuity.begin()
    assert continuity.admit("d", BOOT, 10, 1, now=0) == NEW  # not a duplicate: never stored
    continuity.admit("d", BOOT, 12, 1, now=0)
    assert board.lines[-1]["args"] == {"boot": BOOT, "after": 10}


def test_the_mark_and_the_identities_are_committed_with_the_readings(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 10**6)
    spool.append([("t", b"a")], [Seen(("d", BOOT, 7), 42)], {"d": Mark(BOOT, 7)})
    spool.close()
    again = Spool(tmp_path, 10**6)
    assert again.marks() == {"d": Mark(BOOT, 7)}
    assert again.seen() == [Seen(("d", BOOT, 7), 42)]
    assert again.rows == 1


def test_a_spool_written_by_the_previous_release_is_migrated_with_nothing_lost(
    tmp_path: Path,
) -> None:
    # The schema of main at 1b120ab, byte for byte.
    db = sqlite3.connect(tmp_path / FILE_NAME)
    db.executescript(
        """
        PRAGMA journal_mode=WAL;
        CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT,
            topic TEXT NOT NULL, payload BLOB NOT NULL);
        CREATE TABLE IF NOT EXISTS facts (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """
    )
    rows = [
        (
            "iotpipe/d/telemetry",
            b'{"device":"d","boot":"%s","seq":%d,"ts":1.0,"uptime_ms":1,'
            b'"metrics":{"t":%d.5}}' % (BOOT.encode(), seq, seq),
        )
        for seq in range(3, 8)
    ]
    rows.append(("iotpipe/d/event", b'{"device":"d","event":"x"}'))
    db.executemany("INSERT INTO spool (topic, payload) VALUES (?, ?)", rows)
    db.execute("INSERT INTO facts VALUES ('device', 'd')")
    db.commit()
    db.close()
    spool = Spool(tmp_path, 10**6)
    assert [(t, p) for _, t, p in spool.after(0, 100)] == rows
    assert spool.recall("device") == "d"
    assert spool.marks() == {"d": Mark(BOOT, 7)}  # the next start asks for seq 8 on
    spool.append([("t", b"new")])
    assert spool.after(6, 10)[0][2] == b"new"


def test_a_damaged_spool_is_kept_aside_under_a_name_that_says_so_and_a_new_one_starts(
    tmp_path: Path,
) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"this is not an SQLite file, it was overwritten" * 100)
    counters = Counters("t")
    storage = Storage(tmp_path, 10**6, counters)
    assert storage.writable and storage.spool is not None
    (kept,) = damaged_files(tmp_path)
    assert kept.name.startswith(f"{FILE_NAME}.damaged-")
    assert kept.read_bytes().startswith(b"this is not an SQLite file")
    assert counters.get("spool_damaged") == 1
    storage.spool.append([("t", b"after")])
    assert storage.spool.rows == 1


def test_a_replay_refused_because_one_still_runs_is_asked_again_not_reported() -> None:
    continuity, board, _ = _continuity()
    continuity.load({"d": Mark(BOOT, 9)}, [], RESTART)
    continuity.admit("d", BOOT, 15, 1, now=0)
    busy = wire.Answer(str(board.lines[-1]["id"]), False, error="a replay is running")
    continuity.answered(busy, "d", now=0)
    assert continuity.gaps == [] and len(board.lines) == 1
    continuity.admit("d", BOOT, 16, 1, now=0.5)  # too soon: the board is still busy
    assert len(board.lines) == 1
    continuity.admit("d", BOOT, 17, 1, now=2)
    assert len(board.lines) == 2 and board.lines[-1]["args"] == {"boot": BOOT, "after": 9}


def _state(continuity: Continuity, board: Board, counters: Counters) -> tuple[object, ...]:
    asked = [{k: v for k, v in line.items() if k != "id"} for line in board.lines]
    replay = continuity.replay
    return (
        continuity.marks,
        continuity.above,
        list(continuity.seen.items()),
        continuity.dirty,
        continuity.origin,
        continuity.hole_origin,
        continuity.gaps,
        continuity.staged_seen(),
        asked,
        None if replay is None else (replay.boot, replay.after, replay.deadline),
        counters.snapshot(),
    )


_BATCHES = st.lists(
    st.tuples(
        st.sampled_from([BOOT, "0a1b2c3e"]),
        st.lists(st.tuples(st.integers(0, 40), st.integers(0, 2)), max_size=12),
    ),
    max_size=8,
)


@settings(max_examples=400, deadline=None)
@given(st.integers(-1, 20), st.sets(st.integers(0, 30)), st.booleans(), _BATCHES)
def test_a_batch_admitted_at_once_ends_as_one_admitted_reading_by_reading(
    mark: int,
    spooled: set[int],
    replay_asked: bool,
    batches: list[tuple[str, list[tuple[int, int]]]],
) -> None:
    """Runs in order, duplicates, conflicts, holes and a new boot: the same verdicts and
    the same state either way, from a spool's marks and identities, with or without a
    replay running."""
    one, many = _continuity(), _continuity()
    seen = [Seen(("d", BOOT, seq), 0) for seq in sorted(spooled)]
    for continuity, _board, _counters in (one, many):
        continuity.load({"d": Mark(BOOT, mark)} if mark >= 0 else {}, seen, RESTART)
        if replay_asked:
            continuity.ask("d", now=0)
        continuity.begin()
    for now, (boot, readings) in enumerate(batches):
        verdicts = [one[0].admit("d", boot, seq, digest, now) for seq, digest in readings]
        assert many[0].admit_many("d", boot, readings, now) == verdicts
        assert _state(*many) == _state(*one)
