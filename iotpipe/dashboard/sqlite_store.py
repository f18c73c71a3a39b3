"""The embedded history store: one SQLite file in WAL mode.

WAL lets the HTTP threads read while the writer thread commits. The writing thread has its
own connection (only the writer thread writes, in batches, so there is never write
contention); readers borrow one of at most ``READERS`` pooled connections, so memory for
page caches stays bounded however many server threads there are.
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from iotpipe.dashboard.store import (
    CONFLICTING_DUPLICATE,
    SEQ_BACKWARDS,
    Bucket,
    DeviceRow,
    ExportRow,
    Written,
    latest_per_device,
    rollup_rows,
    same_values,
)
from iotpipe.topics import Telemetry

SCHEMA_VERSION = 1
SCHEMA = """
BEGIN;
CREATE TABLE devices (id TEXT PRIMARY KEY, status TEXT, meta TEXT, last_ts REAL, last TEXT);
CREATE TABLE series (
    id INTEGER PRIMARY KEY, device TEXT NOT NULL, metric TEXT NOT NULL, UNIQUE (device, metric)
);
CREATE TABLE readings (
    device TEXT, boot TEXT, seq INTEGER, ts REAL, uptime_ms INTEGER, flag TEXT,
    PRIMARY KEY (device, boot, seq)
) WITHOUT ROWID;
CREATE INDEX readings_ts ON readings (ts);
CREATE TABLE samples (
    series INTEGER, ts REAL, seq INTEGER, value REAL, PRIMARY KEY (series, ts, seq)
) WITHOUT ROWID;
CREATE TABLE rollups (
    series INTEGER, res INTEGER, bucket INTEGER, n INTEGER, sum REAL, min REAL, max REAL,
    PRIMARY KEY (series, res, bucket)
) WITHOUT ROWID;
PRAGMA user_version = 1;
COMMIT;
"""

MIGRATE_FROM_0 = """
BEGIN;
ALTER TABLE readings ADD COLUMN uptime_ms INTEGER;
ALTER TABLE readings ADD COLUMN flag TEXT;
CREATE TABLE samples_v1 (
    series INTEGER, ts REAL, seq INTEGER, value REAL, PRIMARY KEY (series, ts, seq)
) WITHOUT ROWID;
INSERT INTO samples_v1 SELECT s.series, s.ts, coalesce(
    (SELECT max(r.seq) FROM readings r WHERE r.ts = s.ts AND r.device = x.device), -1), s.value
FROM samples s JOIN series x ON x.id = s.series;
DROP TABLE samples;
ALTER TABLE samples_v1 RENAME TO samples;
PRAGMA user_version = 1;
COMMIT;
"""
"""Version 0 kept one sample per (series, ts): its seq is the reading's of that receipt
time (-1 when none is left); its uptime stays unknown (NULL)."""

INSERT_READING = "INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?, ?, ?)"

EXPORT = """
SELECT s.ts, s.value, r.boot, s.seq, r.uptime_ms, r.flag FROM samples s
LEFT JOIN readings r ON r.ts = s.ts AND r.device = :device AND r.seq = s.seq
WHERE s.series = :series AND (s.ts > :ts OR (s.ts = :ts AND s.seq > :seq)) AND s.ts < :until
ORDER BY s.ts, s.seq LIMIT :limit
"""

UPSERT_ROLLUP = """
INSERT INTO rollups VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (series, res, bucket) DO UPDATE SET
    n = n + excluded.n, sum = sum + excluded.sum,
    min = min(min, excluded.min), max = max(max, excluded.max)
"""

UPDATE_LAST = """
INSERT INTO devices (id, last_ts, last) VALUES (?, ?, ?)
ON CONFLICT (id) DO UPDATE SET last_ts = excluded.last_ts, last = excluded.last
WHERE last_ts IS NULL OR excluded.last_ts >= last_ts
"""

# SQLite takes a bare column from the row where the single min() or max() was found, so
# each query returns the extreme value together with its time.
BUCKETS_RAW = """
SELECT CAST((ts - :since) / :width AS INTEGER) AS b, {agg}(value), ts FROM samples
WHERE series = :series AND ts >= :since AND ts < :until GROUP BY b ORDER BY b
"""
BUCKETS_ROLLUP = """
SELECT CAST((bucket - :since) / :width AS INTEGER) AS b, {agg}({agg}), bucket + :res / 2.0
FROM rollups WHERE series = :series AND res = :res AND bucket >= :first AND bucket < :until
GROUP BY b ORDER BY b
"""

READERS = 4


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        private(path)
        self._local = threading.local()
        self._series: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []
        self._idle: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(READERS)
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        migrate(conn)

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        # NORMAL in WAL mode: a power cut may lose the last commits, never corrupt.
        conn.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._all.append(conn)
        return conn

    def _conn(self) -> sqlite3.Connection:
        """The calling thread's connection, for writing."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._open()
        return conn

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        with self._slots:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._open()
            try:
                yield conn
            finally:
                self._idle.put(conn)

    def _series_id(
        self, device: str, metric: str, reader: sqlite3.Connection | None = None
    ) -> int | None:
        """The series' id; created when missing unless asked through a ``reader``."""
        key = (device, metric)
        found = self._series.get(key)
        if found is None:
            conn = reader or self._conn()
            if reader is None:
                conn.execute("INSERT OR IGNORE INTO series (device, metric) VALUES (?, ?)", key)
            row = conn.execute(
                "SELECT id FROM series WHERE device = ? AND metric = ?", key
            ).fetchone()
            if row is None:
                return None
            found = self._series[key] = int(row[0])
        return found

    def write(self, readings: Sequence[Telemetry]) -> Written:
        try:
            return self._write(readings)
        except Exception:
            self._series.clear()  # ids made by the rolled-back transaction are not stored
            raise

    def _write(self, readings: Sequence[Telemetry]) -> Written:
        conn = self._conn()
        with conn:
            # Explicitly: Python's sqlite3 opens a transaction only before DML, and _fresh's
            # SAVEPOINT would then be the outermost one, whose RELEASE commits the readings
            # on their own; a kill before the samples' commit left readings without values.
            conn.execute("BEGIN")
            written = self._fresh(conn, readings)
            ids = self._series
            samples = []
            for r in written:
                for m, v in r.metrics.items():
                    series = ids.get((r.device, m)) or self._series_id(r.device, m) or 0
                    samples.append((series, r.ts, r.seq, v))
            conn.executemany("INSERT OR IGNORE INTO samples VALUES (?, ?, ?, ?)", samples)
            conn.executemany(UPSERT_ROLLUP, rollup_rows((s, t, v) for s, t, _, v in samples))
            newest = latest_per_device(written)
            conn.executemany(
                UPDATE_LAST,
                [(d, r.ts, json.dumps(r.metrics)) for d, r in newest.items()],
            )
        return written

    def _fresh(self, conn: sqlite3.Connection, readings: Sequence[Telemetry]) -> Written:
        """The readings not stored before. Nearly always that is all of them, which one
        executemany shows by its change count; only a batch with a duplicate is redone one
        reading at a time to find which, and whether each copy has the stored values."""
        flags = _flags(readings, self._highest(conn, readings))
        rows = [
            (r.device, r.boot, r.seq, r.ts, r.uptime_ms, f)
            for r, f in zip(readings, flags, strict=True)
        ]
        savepoint = conn.total_changes
        conn.execute("SAVEPOINT fresh")
        conn.executemany(INSERT_READING, rows)
        if conn.total_changes - savepoint == len(rows):
            conn.execute("RELEASE fresh")
            written = Written(readings)
        else:
            conn.execute("ROLLBACK TO fresh")
            conn.execute("RELEASE fresh")
            written = Written()
            batch: dict[tuple[str, str, int], Telemetry] = {}
            for r, row in zip(readings, rows, strict=True):
                key = (r.device, r.boot, r.seq)
                if conn.execute(INSERT_READING, row).rowcount:
                    written.append(r)
                    batch[key] = r
                elif not self._same_as_stored(conn, r, batch.get(key)):
                    written.refused.append((r, CONFLICTING_DUPLICATE))
        fresh = {id(r) for r in written}
        written.flagged = [
            (r, f) for r, f in zip(readings, flags, strict=True) if f and id(r) in fresh
        ]
        return written

    @staticmethod
    def _highest(
        conn: sqlite3.Connection, readings: Sequence[Telemetry]
    ) -> dict[tuple[str, str], int]:
        """The highest seq stored so far of each (device, boot) in the batch."""
        boots = {(r.device, r.boot) for r in readings}
        found: dict[tuple[str, str], int] = {}
        for key in boots:
            (top,) = conn.execute(
                "SELECT max(seq) FROM readings WHERE device = ? AND boot = ?", key
            ).fetchone()
            if top is not None:
                found[key] = int(top)
        return found

    def _same_as_stored(
        self, conn: sqlite3.Connection, r: Telemetry, in_batch: Telemetry | None
    ) -> bool:
        if in_batch is not None:
            return same_values(r, in_batch.ts, in_batch.uptime_ms, in_batch.metrics)
        ts, uptime = conn.execute(
            "SELECT ts, uptime_ms FROM readings WHERE device = ? AND boot = ? AND seq = ?",
            (r.device, r.boot, r.seq),
        ).fetchone()
        stored = dict(
            conn.execute(
                "SELECT x.metric, s.value FROM samples s JOIN series x ON x.id = s.series "
                "WHERE x.device = ? AND s.ts = ? AND s.seq = ?",
                (r.device, ts, r.seq),
            ).fetchall()
        )
        return same_values(r, ts, uptime, stored)

    def set_status(self, device: str, status: str) -> None:
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO devices (id, status) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET status = excluded.status",
                (device, status),
            )

    def set_meta(self, device: str, meta: dict[str, Any]) -> None:
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO devices (id, meta) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET meta = excluded.meta",
                (device, json.dumps(meta)),
            )

    def devices(self) -> list[DeviceRow]:
        with self._reader() as conn:
            rows = conn.execute(
                "SELECT id, status, meta, last_ts, last FROM devices ORDER BY id"
            ).fetchall()
        return [
            DeviceRow(i, s, json.loads(m) if m else None, t, json.loads(last) if last else {})
            for i, s, m, t, last in rows
        ]

    def metrics(self, device: str) -> list[str]:
        with self._reader() as conn:
            rows = conn.execute(
                "SELECT metric FROM series WHERE device = ? ORDER BY metric", (device,)
            ).fetchall()
        return [r[0] for r in rows]

    def raw(
        self, device: str, metric: str, since: float, until: float, limit: int
    ) -> list[tuple[float, float]]:
        with self._reader() as conn:
            series = self._series_id(device, metric, conn)
            if series is None:
                return []
            rows = conn.execute(
                "SELECT ts, value FROM samples WHERE series = ? AND ts >= ? AND ts < ? "
                "ORDER BY ts, seq LIMIT ?",
                (series, since, until, limit),
            ).fetchall()
        return [(float(t), float(v)) for t, v in rows]

    def buckets(
        self, device: str, metric: str, since: float, until: float, width: float, res: int
    ) -> list[Bucket]:
        with self._reader() as conn:
            series = self._series_id(device, metric, conn)
            if series is None:
                return []
            sql = BUCKETS_ROLLUP if res else BUCKETS_RAW
            params = {
                "series": series,
                "since": since,
                "until": until,
                "width": width,
                "res": res,
                "first": int(since // res) * res if res else 0,
            }
            lows = conn.execute(sql.format(agg="min"), params).fetchall()
            highs = {b: (v, t) for b, v, t in conn.execute(sql.format(agg="max"), params)}
        return [Bucket(t, v, highs[b][1], highs[b][0]) for b, v, t in lows]

    def export(
        self, device: str, metric: str, after: tuple[float, int], until: float, limit: int
    ) -> list[ExportRow]:
        with self._reader() as conn:
            series = self._series_id(device, metric, conn)
            if series is None:
                return []
            params = {
                "series": series,
                "device": device,
                "ts": after[0],
                "seq": after[1],
                "until": until,
                "limit": limit,
            }
            rows = conn.execute(EXPORT, params).fetchall()
        return [
            ExportRow(float(t), float(v), b, None if q < 0 else int(q), u, f)
            for t, v, b, q, u, f in rows
        ]

    def prune(self, before: float, keep_per_series: int) -> int:
        conn = self._conn()
        dropped = 0
        with conn:
            dropped += conn.execute("DELETE FROM samples WHERE ts < ?", (before,)).rowcount
            conn.execute("DELETE FROM readings WHERE ts < ?", (before,))
            conn.execute("DELETE FROM rollups WHERE bucket < ?", (before,))
            for (series,) in conn.execute("SELECT id FROM series").fetchall():
                dropped += conn.execute(
                    "DELETE FROM samples WHERE series = ?1 AND ts < (SELECT ts FROM samples "
                    "WHERE series = ?1 ORDER BY ts DESC LIMIT 1 OFFSET ?2)",
                    (series, keep_per_series - 1),
                ).rowcount
        return dropped

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
        self._idle = queue.LifoQueue()


def _flags(readings: Sequence[Telemetry], highest: dict[tuple[str, str], int]) -> list[str | None]:
    """SEQ_BACKWARDS for each reading below a seq of its boot stored or seen before it."""
    top = dict(highest)
    flags: list[str | None] = []
    for r in readings:
        key = (r.device, r.boot)
        before = top.get(key)
        flags.append(SEQ_BACKWARDS if before is not None and r.seq < before else None)
        if before is None or r.seq > before:
            top[key] = r.seq
    return flags


def private(path: Path) -> None:
    """The data directory 0700 and the history file 0600 (SQLite gives its -wal and -shm
    files the same mode): readings are their owner's alone, also for a file an older
    release made readable by everyone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)


def migrate(conn: sqlite3.Connection) -> None:
    """Create the schema in a new file, or bring an older one to SCHEMA_VERSION."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'readings'").fetchone()
    if not tables[0]:
        conn.executescript(SCHEMA)
    elif version == 0:
        conn.executescript(MIGRATE_FROM_0)
    elif version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"history schema version {version} is newer than this release knows "
            f"({SCHEMA_VERSION}): upgrade iotpipe"
        )
