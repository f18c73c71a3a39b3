"""The on-disk spool: every accepted reading, in order, until the broker acknowledged it.

Mechanism only: an SQLite table in WAL mode in ``DIR/spool.sqlite``. A row is committed
before it is published and deleted when its PUBACK arrives, so killing the bridge at any
moment loses nothing it accepted (a committed WAL transaction survives the process; with
``synchronous=NORMAL`` a power cut may lose the last second or so, not a process kill).
The spool is bounded by size: over it, the oldest rows are dropped and the caller is told
how many. One connection shared by the bridge's threads behind a lock: every call is short.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

ROW_OVERHEAD = 40  # bytes SQLite spends per row beyond topic and payload, roughly

# AUTOINCREMENT: an id is never reused, even after the table was emptied, so the sender's
# "everything after the last id I sent" never skips a new row.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,
                                  payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS facts (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

Row = tuple[int, str, bytes]


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "spool.sqlite"
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        count, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(length(topic) + length(payload)), 0) FROM spool"
        ).fetchone()
        self._rows: int = count
        self._bytes: int = size + count * ROW_OVERHEAD

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def size(self) -> int:
        return self._bytes

    def append(self, messages: Iterable[tuple[str, bytes]]) -> int:
        """Commit messages in one transaction; return how many old rows were dropped to
        stay within ``max_bytes``."""
        batch = list(messages)
        added = sum(len(t) + len(p) + ROW_OVERHEAD for t, p in batch)
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO spool (topic, payload) VALUES (?, ?)", batch)
            self._rows += len(batch)
            self._bytes += added
            dropped = self._trim() if self._bytes > self.max_bytes else 0
            self._db.execute("COMMIT")
        return dropped

    def _trim(self) -> int:
        excess = self._bytes - self.max_bytes
        freed = dropped = 0
        last = 0
        cursor = self._db.execute(
            "SELECT id, length(topic) + length(payload) FROM spool ORDER BY id"
        )
        for row_id, size in cursor:
            if freed >= excess:
                break
            freed += size + ROW_OVERHEAD
            dropped += 1
            last = row_id
        cursor.close()
        self._db.execute("DELETE FROM spool WHERE id <= ?", (last,))
        self._rows -= dropped
        self._bytes -= freed
        return dropped

    def after(self, row_id: int, limit: int) -> list[Row]:
        """Up to ``limit`` rows with an id above ``row_id``, oldest first."""
        with self._lock:
            return self._db.execute(
                "SELECT id, topic, payload FROM spool WHERE id > ? ORDER BY id LIMIT ?",
                (row_id, limit),
            ).fetchall()

    def last_id(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM spool").fetchone()[0])

    def delete(self, ids: Iterable[int]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            for start, end in _runs(sorted(ids)):
                cursor = self._db.execute(
                    "DELETE FROM spool WHERE id BETWEEN ? AND ? "
                    "RETURNING length(topic) + length(payload)",
                    (start, end),
                )
                sizes = [size for (size,) in cursor]
                self._rows -= len(sizes)
                self._bytes -= sum(sizes) + len(sizes) * ROW_OVERHEAD
            self._db.execute("COMMIT")

    def remember(self, key: str, value: str) -> None:
        """A small fact that must outlive the process (the device id last seen)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO facts VALUES (?, ?)", (key, value))

    def recall(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM facts WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


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
