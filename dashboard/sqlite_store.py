"""The embedded history store: one SQLite file in WAL mode.

WAL lets the HTTP threads read while the writer thread commits. The writing thread has its
own connection (only the writer thread writes, in batches, so there is never write
contention); readers borrow one of at most ``READERS`` pooled connections, so memory for
page caches stays bounded however many server threads there are.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from iotpipe.dashboard.store import Bucket, DeviceRow, latest_per_device, rollup_rows

from iotpipe.topics import Telemetry

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, status TEXT, meta TEXT, last_ts REAL, last TEXT
);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, device TEXT NOT NULL, metric TEXT NOT NULL, UNIQUE (device, metric)
);
CREATE TABLE IF NOT EXISTS readings (
    device TEXT, boot TEXT, seq INTEGER, ts REAL, PRIMARY KEY (device, boot, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_ts ON readings (ts);
CREATE TABLE IF NOT EXISTS samples (
    series INTEGER, ts REAL, value REAL, PRIMARY KEY (series, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollups (
    series INTEGER, res INTEGER, bucket INTEGER, n INTEGER, sum REAL, min REAL, max REAL,
    PRIMARY KEY (series, res, bucket)
) WITHOUT ROWID;
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
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._series: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []
        self._idle: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(READERS)
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA)

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

    def write(self, readings: Sequence[Telemetry]) -> list[Telemetry]:
        conn = self._conn()
        with conn:
            fresh = self._fresh(conn, readings)
            ids = self._series
            samples = []
            for r in fresh:
                for m, v in r.metrics.items():
                    series = ids.get((r.device, m)) or self._series_id(r.device, m) or 0
                    samples.append((series, r.ts, v))
            conn.executemany("INSERT OR REPLACE INTO samples VALUES (?, ?, ?)", samples)
            conn.executemany(UPSERT_ROLLUP, rollup_rows(samples))
            newest = latest_per_device(fresh)
            conn.executemany(
                UPDATE_LAST,
                [(d, r.ts, json.dumps(r.metrics)) for d, r in newest.items()],
            )
        return fresh

    @staticmethod
    def _fresh(conn: sqlite3.Connection, readings: Sequence[Telemetry]) -> list[Telemetry]:
        """The readings not stored before. Nearly always that is all of them, which one
        executemany shows by its change count; only a batch with a duplicate is redone one
        reading at a time to find which."""
        keys = [(r.device, r.boot, r.seq, r.ts) for r in readings]
        savepoint = conn.total_changes
        conn.execute("SAVEPOINT fresh")
        conn.executemany("INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?)", keys)
        if conn.total_changes - savepoint == len(keys):
            conn.execute("RELEASE fresh")
            return list(readings)
        conn.execute("ROLLBACK TO fresh")
        conn.execute("RELEASE fresh")
        insert = "INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?)"
        return [r for r, k in zip(readings, keys, strict=True) if conn.execute(insert, k).rowcount]

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
                "ORDER BY ts LIMIT ?",
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
