"""The on-disk spool: every accepted reading, in order, until the broker acknowledged it.

Mechanism only: an SQLite file in WAL mode, ``DIR/spool.sqlite``. A row is committed
before it is published and deleted when its PUBACK arrives, so killing the bridge at any
moment loses nothing it accepted (a committed WAL transaction survives the process; with
``synchronous=NORMAL`` a power cut may lose the last second or so, not a process kill).
The same transaction records, per device, the *mark* — the boot and seq up to which every
reading is committed or was reported missing — and the identity and digest of each recent
reading, so a restarted bridge knows where to ask the board to resume and which replayed
readings it already has. The spool is bounded by size: over it, the oldest rows are
dropped and the caller is told which. One connection shared by the bridge's threads
behind a lock: every call is short. Every SQLite failure leaves as :class:`SpoolError`
with a reason the caller's policy acts on (``disk_full``, ``damaged``, …).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

ROW_OVERHEAD = 40  # bytes SQLite spends per row beyond topic and payload, roughly
SEEN_MAX = 10_000  # identities kept for dropping replayed duplicates: many board rings
FILE_NAME = "spool.sqlite"
WAL_PAGES = 256
VERSION = 2  # PRAGMA user_version; 0 is the spool of main at 1b120ab (spool + facts only)

# AUTOINCREMENT: an id is never reused, even after the table was emptied, so the sender's
# "everything after the last id I sent" never skips a new row.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,
                                  payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS facts (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS marks (device TEXT PRIMARY KEY, boot TEXT NOT NULL,
                                  seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS seen (device TEXT NOT NULL, boot TEXT NOT NULL,
                                 seq INTEGER NOT NULL, digest INTEGER NOT NULL,
                                 PRIMARY KEY (device, boot, seq)) WITHOUT ROWID;
"""

Row = tuple[int, str, bytes]
Identity = tuple[str, str, int]  # (device, boot, seq)

_REASONS = {
    "SQLITE_FULL": "disk_full",
    "SQLITE_CORRUPT": "damaged",
    "SQLITE_NOTADB": "damaged",
    "SQLITE_READONLY": "read_only",
    "SQLITE_CANTOPEN": "cannot_open",
    "SQLITE_PERM": "cannot_open",
}


class SpoolError(Exception):
    """The spool could not do what was asked; ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _translate(exc: sqlite3.Error) -> SpoolError:
    name = getattr(exc, "sqlite_errorname", "") or ""
    primary = "_".join(name.split("_")[:2])  # SQLITE_IOERR_WRITE -> SQLITE_IOERR
    reason = _REASONS.get(primary, "")
    if not reason:
        text = str(exc)
        if "disk is full" in text:
            reason = "disk_full"
        elif "malformed" in text or "not a database" in text:
            reason = "damaged"
        elif primary == "SQLITE_IOERR":
            reason = "io_error"
        else:
            reason = "error"
    return SpoolError(reason, str(exc))


@dataclass(frozen=True, slots=True)
class Mark:
    """Every reading of ``boot`` up to ``seq`` is committed or was reported missing."""

    boot: str
    seq: int


@dataclass(frozen=True, slots=True)
class Seen:
    identity: Identity
    digest: int


@dataclass(frozen=True, slots=True)
class Dropped:
    """Rows the size bound pushed out: how many, and the readings among them."""

    rows: int
    readings: list[Identity]


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / FILE_NAME
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise _translate(exc) from None
        try:
            self._open()
        except sqlite3.Error as exc:
            self._db.close()
            raise _translate(exc) from None

    def _open(self) -> None:
        db = self._db
        check = db.execute("PRAGMA quick_check(1)").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"database disk image is malformed ({check})")
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        # A short WAL: on a small disk (a Pi's, a tmpfs) it must not take the space the
        # readings need; SQLite's defaults let it grow to 4 MB and never shrink it.
        db.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
        db.execute(f"PRAGMA journal_size_limit={WAL_PAGES * 4096}")
        if db.execute("PRAGMA user_version").fetchone()[0] < VERSION:
            self._migrate()
        count, size = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(length(topic) + length(payload)), 0) FROM spool"
        ).fetchone()
        self._rows: int = count
        self._bytes: int = size + count * ROW_OVERHEAD
        self._boots = {d: b for d, b in db.execute("SELECT device, boot FROM marks")}

    def _migrate(self) -> None:
        """Version 0 (main at 1b120ab) had no marks: the newest spooled reading of each
        device is its mark, so the first start after the upgrade resumes after it."""
        db = self._db
        db.executescript(_SCHEMA)  # CREATE … IF NOT EXISTS: the same on a new spool
        db.execute("BEGIN IMMEDIATE")
        try:
            newest: dict[str, Mark] = {}
            rows = db.execute("SELECT payload FROM spool WHERE topic LIKE '%/telemetry'")
            for (payload,) in rows:
                identity = reading_identity(bytes(payload))
                if identity is not None:
                    newest[identity[0]] = Mark(identity[1], identity[2])
            for device, mark in newest.items():
                db.execute(
                    "INSERT OR IGNORE INTO marks VALUES (?, ?, ?)", (device, mark.boot, mark.seq)
                )
            db.execute(f"PRAGMA user_version = {VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN")
                yield self._db
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    with suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise _translate(exc) from None

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def size(self) -> int:
        return self._bytes

    def append(
        self,
        messages: Iterable[tuple[str, bytes]],
        seen: Iterable[Seen] = (),
        marks: dict[str, Mark] | None = None,
    ) -> Dropped:
        """Commit messages, the identities of the readings among them and the devices'
        new marks in one transaction; say what was dropped to stay within ``max_bytes``."""
        batch = list(messages)
        added = batch_bytes(batch)
        identities = [(s.identity[0], s.identity[1], s.identity[2], s.digest) for s in seen]
        rows, size = self._rows, self._bytes
        try:
            with self._transaction() as db:
                db.executemany("INSERT INTO spool (topic, payload) VALUES (?, ?)", batch)
                db.executemany(
                    "INSERT OR IGNORE INTO seen (device, boot, seq, digest) VALUES (?, ?, ?, ?)",
                    identities,
                )
                for device, mark in (marks or {}).items():
                    db.execute(
                        "INSERT OR REPLACE INTO marks VALUES (?, ?, ?)",
                        (device, mark.boot, mark.seq),
                    )
                self._rows += len(batch)
                self._bytes += added
                dropped = self._trim() if self._bytes > self.max_bytes else Dropped(0, [])
                for device, mark in (marks or {}).items():  # bounded: the newest of a boot
                    db.execute(
                        "DELETE FROM seen WHERE device = ? AND boot = ? AND seq <= ?",
                        (device, mark.boot, mark.seq - SEEN_MAX),
                    )
                    if self._boots.get(device) != mark.boot:
                        db.execute(
                            "DELETE FROM seen WHERE device = ? AND boot != ?", (device, mark.boot)
                        )
        except SpoolError:
            self._rows, self._bytes = rows, size
            raise
        self._boots.update((device, mark.boot) for device, mark in (marks or {}).items())
        return dropped

    def _trim(self) -> Dropped:
        excess = self._bytes - self.max_bytes
        freed = dropped = 0
        last = 0
        readings: list[Identity] = []
        cursor = self._db.execute("SELECT id, topic, payload FROM spool ORDER BY id")
        for row_id, topic, payload in cursor:
            if freed >= excess:
                break
            freed += len(topic) + len(payload) + ROW_OVERHEAD
            dropped += 1
            last = row_id
            identity = reading_identity(bytes(payload)) if topic.endswith("/telemetry") else None
            if identity is not None:
                readings.append(identity)
        cursor.close()
        self._db.execute("DELETE FROM spool WHERE id <= ?", (last,))
        self._rows -= dropped
        self._bytes -= freed
        return Dropped(dropped, readings)

    def after(self, row_id: int, limit: int) -> list[Row]:
        """Up to ``limit`` rows with an id above ``row_id``, oldest first."""
        with self._lock:
            try:
                return self._db.execute(
                    "SELECT id, topic, payload FROM spool WHERE id > ? ORDER BY id LIMIT ?",
                    (row_id, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise _translate(exc) from None

    def last_id(self) -> int:
        with self._lock:
            try:
                return int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM spool").fetchone()[0])
            except sqlite3.Error as exc:
                raise _translate(exc) from None

    def delete(self, ids: Iterable[int]) -> None:
        removed = 0
        freed = 0
        with self._transaction() as db:
            for start, end in _runs(sorted(ids)):
                cursor = db.execute(
                    "DELETE FROM spool WHERE id BETWEEN ? AND ? "
                    "RETURNING length(topic) + length(payload)",
                    (start, end),
                )
                sizes = [size for (size,) in cursor]
                removed += len(sizes)
                freed += sum(sizes) + len(sizes) * ROW_OVERHEAD
        self._rows -= removed
        self._bytes -= freed

    def marks(self) -> dict[str, Mark]:
        with self._lock:
            try:
                rows = self._db.execute("SELECT device, boot, seq FROM marks").fetchall()
            except sqlite3.Error as exc:
                raise _translate(exc) from None
        return {device: Mark(boot, seq) for device, boot, seq in rows}

    def seen(self) -> list[Seen]:
        """The recent readings' identities and digests, oldest first."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT device, boot, seq, digest FROM seen ORDER BY seq"
                ).fetchall()
            except sqlite3.Error as exc:
                raise _translate(exc) from None
        return [Seen((device, boot, seq), digest) for device, boot, seq, digest in rows]

    def remember(self, key: str, value: str) -> None:
        """A small fact that must outlive the process (the device id last seen)."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO facts VALUES (?, ?)", (key, value))

    def recall(self, key: str) -> str | None:
        with self._lock:
            try:
                row = self._db.execute("SELECT value FROM facts WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error as exc:
                raise _translate(exc) from None
        return None if row is None else str(row[0])

    def checkpoint(self) -> bool:
        """Copy the WAL into the database file and empty it: on a small disk the WAL may
        fill it before SQLite's automatic checkpoint (at 4 MB) comes. True if it worked."""
        with self._lock:
            try:
                busy = int(self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0])
            except sqlite3.Error:
                return False
        return busy == 0

    def close(self) -> None:
        with self._lock:
            self._db.close()


def batch_bytes(batch: Iterable[tuple[str, bytes]]) -> int:
    """What rows of these messages count against the spool's ``max_bytes``."""
    return sum(len(topic) + len(payload) + ROW_OVERHEAD for topic, payload in batch)


def reading_identity(payload: bytes) -> Identity | None:
    """(device, boot, seq) of a telemetry payload, or None if it is not one."""
    try:
        body = json.loads(payload)
        device, boot, seq = body["device"], body["boot"], body["seq"]
    except (ValueError, TypeError, KeyError):
        return None
    if isinstance(device, str) and isinstance(boot, str) and type(seq) is int:
        return device, boot, seq
    return None


def _runs(ids: list[int]) -> Iterable[tuple[int, int]]:
    """Sorted ids as (first, last) runs of consecutive numbers: acks come mostly in order."""
    start = prev = None
    for row_id in ids:
        if start is None or prev is None:
            start = prev = row_id
        elif row_id == prev + 1:
            prev = row_id
        else:
            yield start, prev
            start = prev = row_id
    if start is not None and prev is not None:
        yield start, prev
