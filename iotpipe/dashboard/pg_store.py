"""The history store on PostgreSQL (psycopg 3), for a store shared by several dashboards.

The same layout as the SQLite store (see ``store.py``). A batch is a handful of
``INSERT … SELECT FROM unnest(…)`` statements, one round trip each whatever the batch
size. Several dashboards may write at once (MQTT shared subscription): the schema is created
under an advisory lock, and rollup rows are upserted in key order so two writers never
wait on each other in a cycle.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

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

SCHEMA = """
SELECT pg_advisory_xact_lock(4242001);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, status TEXT, meta JSONB, last_ts DOUBLE PRECISION, last JSONB
);
CREATE TABLE IF NOT EXISTS series (
    id SERIAL PRIMARY KEY, device TEXT NOT NULL, metric TEXT NOT NULL, UNIQUE (device, metric)
);
CREATE TABLE IF NOT EXISTS readings (
    device TEXT, boot TEXT, seq BIGINT, ts DOUBLE PRECISION, uptime_ms BIGINT, flag TEXT,
    PRIMARY KEY (device, boot, seq)
);
CREATE INDEX IF NOT EXISTS readings_ts ON readings (ts);
CREATE TABLE IF NOT EXISTS samples (
    series INTEGER, ts DOUBLE PRECISION, seq BIGINT, value DOUBLE PRECISION,
    PRIMARY KEY (series, ts, seq)
);
CREATE TABLE IF NOT EXISTS rollups (
    series INTEGER, res INTEGER, bucket BIGINT, n BIGINT, sum DOUBLE PRECISION,
    min DOUBLE PRECISION, max DOUBLE PRECISION, PRIMARY KEY (series, res, bucket)
);
"""

MIGRATE_FROM_0 = """
SELECT pg_advisory_xact_lock(4242001);
ALTER TABLE readings ADD COLUMN IF NOT EXISTS uptime_ms BIGINT;
ALTER TABLE readings ADD COLUMN IF NOT EXISTS flag TEXT;
ALTER TABLE samples ADD COLUMN seq BIGINT;
UPDATE samples s SET seq = coalesce((SELECT max(r.seq) FROM readings r JOIN series x
    ON x.device = r.device WHERE x.id = s.series AND r.ts = s.ts), -1);
ALTER TABLE samples ALTER COLUMN seq SET NOT NULL;
ALTER TABLE samples DROP CONSTRAINT samples_pkey;
ALTER TABLE samples ADD PRIMARY KEY (series, ts, seq);
"""
"""Version 0 (1b120ab) kept one sample per (series, ts): see sqlite_store.MIGRATE_FROM_0."""

INSERT_READINGS = """
INSERT INTO readings SELECT * FROM unnest(
    %s::text[], %s::text[], %s::bigint[], %s::float8[], %s::bigint[], %s::text[])
ON CONFLICT DO NOTHING RETURNING device, boot, seq
"""
INSERT_SAMPLES = """
INSERT INTO samples SELECT * FROM unnest(%s::int[], %s::float8[], %s::bigint[], %s::float8[])
ON CONFLICT DO NOTHING
"""
HIGHEST = """
SELECT device, boot, max(seq) FROM readings
WHERE (device, boot) IN (SELECT * FROM unnest(%s::text[], %s::text[])) GROUP BY device, boot
"""
STORED = """
SELECT r.ts, r.uptime_ms, x.metric, s.value FROM readings r
LEFT JOIN series x ON x.device = r.device
LEFT JOIN samples s ON s.series = x.id AND s.ts = r.ts AND s.seq = r.seq
WHERE r.device = %s AND r.boot = %s AND r.seq = %s
"""
EXPORT = """
SELECT s.ts, s.value, r.boot, s.seq, r.uptime_ms, r.flag FROM samples s
LEFT JOIN readings r ON r.ts = s.ts AND r.device = %(device)s AND r.seq = s.seq
WHERE s.series = %(series)s AND (s.ts, s.seq) > (%(ts)s, %(seq)s) AND s.ts < %(until)s
ORDER BY s.ts, s.seq LIMIT %(limit)s
"""
UPSERT_ROLLUPS = """
INSERT INTO rollups SELECT * FROM unnest(
    %s::int[], %s::int[], %s::bigint[], %s::bigint[], %s::float8[], %s::float8[], %s::float8[])
ON CONFLICT (series, res, bucket) DO UPDATE SET
    n = rollups.n + excluded.n, sum = rollups.sum + excluded.sum,
    min = least(rollups.min, excluded.min), max = greatest(rollups.max, excluded.max)
"""
UPDATE_LAST = """
INSERT INTO devices (id, last_ts, last) VALUES (%s, %s, %s)
ON CONFLICT (id) DO UPDATE SET last_ts = excluded.last_ts, last = excluded.last
WHERE devices.last_ts IS NULL OR excluded.last_ts >= devices.last_ts
"""
# min(ARRAY[value, ts]) is the smallest value together with its time, in one pass.
BUCKETS_RAW = """
SELECT floor((ts - %(since)s) / %(width)s) AS b, min(ARRAY[value, ts]), max(ARRAY[value, ts])
FROM samples WHERE series = %(series)s AND ts >= %(since)s AND ts < %(until)s
GROUP BY b ORDER BY b
"""
BUCKETS_ROLLUP = """
SELECT floor((bucket - %(since)s) / %(width)s) AS b,
    min(ARRAY[min, bucket + %(res)s / 2.0]), max(ARRAY[max, bucket + %(res)s / 2.0])
FROM rollups WHERE series = %(series)s AND res = %(res)s
    AND bucket >= %(first)s AND bucket < %(until)s
GROUP BY b ORDER BY b
"""


def _columns(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Rows → one list per column, each sent as an array for ``unnest``."""
    return [list(col) for col in zip(*rows, strict=True)]


class PostgresStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[psycopg.Connection[Any]] = []
        self._series: dict[tuple[str, str], int] = {}
        with self._conn().transaction():
            self._conn().execute(SCHEMA)
            found = (
                self._conn()
                .execute(
                    "SELECT 1 FROM information_schema.columns "
                    "WHERE table_name = 'samples' AND column_name = 'seq'"
                )
                .fetchone()
            )
            if found is None:
                self._conn().execute(MIGRATE_FROM_0)

    def _conn(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg.connect(self.url, autocommit=True)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _series_id(self, device: str, metric: str, create: bool = True) -> int | None:
        key = (device, metric)
        found = self._series.get(key)
        if found is None:
            conn = self._conn()
            if create:
                conn.execute(
                    "INSERT INTO series (device, metric) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    key,
                )
            row = conn.execute(
                "SELECT id FROM series WHERE device = %s AND metric = %s", key
            ).fetchone()
            if row is None:
                return None
            found = self._series[key] = int(row[0])
        return found

    def write(self, readings: Sequence[Telemetry]) -> Written:
        conn = self._conn()
        first: dict[tuple[str, str, int], Telemetry] = {}
        written = Written()
        for r in readings:
            seen = first.setdefault((r.device, r.boot, r.seq), r)
            if seen is not r and not same_values(r, seen.ts, seen.uptime_ms, seen.metrics):
                written.refused.append((r, CONFLICTING_DUPLICATE))
        ids = {
            (r.device, m): self._series_id(r.device, m) or 0
            for r in first.values()
            for m in r.metrics
        }
        with conn.transaction():
            flags = self._flags(conn, list(first.values()))
            cols = _columns([(*k, r.ts, r.uptime_ms, flags[k]) for k, r in first.items()])
            new_keys = {tuple(k) for k in conn.execute(INSERT_READINGS, cols)} if cols else set()
            for k, r in first.items():
                if k in new_keys:
                    written.append(r)
                    if flags[k]:
                        written.flagged.append((r, flags[k] or ""))
                elif not self._same_as_stored(conn, r):
                    written.refused.append((r, CONFLICTING_DUPLICATE))
            samples = [
                (ids[(r.device, m)], r.ts, r.seq, v) for r in written for m, v in r.metrics.items()
            ]
            if samples:
                conn.execute(INSERT_SAMPLES, _columns(samples))
                rollups = sorted(rollup_rows((s, t, v) for s, t, _, v in samples))
                conn.execute(UPSERT_ROLLUPS, _columns(rollups))
            newest = latest_per_device(written)
            with conn.cursor() as cur:
                cur.executemany(
                    UPDATE_LAST, [(d, r.ts, Jsonb(r.metrics)) for d, r in sorted(newest.items())]
                )
        return written

    @staticmethod
    def _flags(
        conn: psycopg.Connection[Any], readings: list[Telemetry]
    ) -> dict[tuple[str, str, int], str | None]:
        boots = sorted({(r.device, r.boot) for r in readings})
        top = {(d, b): int(q) for d, b, q in conn.execute(HIGHEST, _columns(boots) or [[], []])}
        flags: dict[tuple[str, str, int], str | None] = {}
        for r in readings:
            before = top.get((r.device, r.boot))
            flags[(r.device, r.boot, r.seq)] = (
                SEQ_BACKWARDS if before is not None and r.seq < before else None
            )
            if before is None or r.seq > before:
                top[(r.device, r.boot)] = r.seq
        return flags

    @staticmethod
    def _same_as_stored(conn: psycopg.Connection[Any], r: Telemetry) -> bool:
        rows = conn.execute(STORED, (r.device, r.boot, r.seq)).fetchall()
        if not rows:
            return True  # another dashboard of the group is storing it in this moment
        values = {m: float(v) for _, _, m, v in rows if m is not None and v is not None}
        return same_values(r, float(rows[0][0]), rows[0][1], values)

    def set_status(self, device: str, status: str) -> None:
        self._conn().execute(
            "INSERT INTO devices (id, status) VALUES (%s, %s) "
            "ON CONFLICT (id) DO UPDATE SET status = excluded.status",
            (device, status),
        )

    def set_meta(self, device: str, meta: dict[str, Any]) -> None:
        self._conn().execute(
            "INSERT INTO devices (id, meta) VALUES (%s, %s) "
            "ON CONFLICT (id) DO UPDATE SET meta = excluded.meta",
            (device, Jsonb(meta)),
        )

    def devices(self) -> list[DeviceRow]:
        rows = self._conn().execute(
            "SELECT id, status, meta, last_ts, last FROM devices ORDER BY id"
        )
        return [DeviceRow(i, s, m, t, last or {}) for i, s, m, t, last in rows]

    def metrics(self, device: str) -> list[str]:
        rows = self._conn().execute(
            "SELECT metric FROM series WHERE device = %s ORDER BY metric", (device,)
        )
        return [r[0] for r in rows]

    def raw(
        self, device: str, metric: str, since: float, until: float, limit: int
    ) -> list[tuple[float, float]]:
        series = self._series_id(device, metric, create=False)
        if series is None:
            return []
        rows = self._conn().execute(
            "SELECT ts, value FROM samples WHERE series = %s AND ts >= %s AND ts < %s "
            "ORDER BY ts, seq LIMIT %s",
            (series, since, until, limit),
        )
        return [(float(t), float(v)) for t, v in rows]

    def buckets(
        self, device: str, metric: str, since: float, until: float, width: float, res: int
    ) -> list[Bucket]:
        series = self._series_id(device, metric, create=False)
        if series is None:
            return []
        params = {
            "series": series,
            "since": since,
            "until": until,
            "width": width,
            "res": res,
            "first": int(since // res) * res if res else 0,
        }
        rows = self._conn().execute(BUCKETS_ROLLUP if res else BUCKETS_RAW, params)
        return [Bucket(lo[1], lo[0], hi[1], hi[0]) for _, lo, hi in rows]

    def export(
        self, device: str, metric: str, after: tuple[float, int], until: float, limit: int
    ) -> list[ExportRow]:
        series = self._series_id(device, metric, create=False)
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
        rows = self._conn().execute(EXPORT, params)
        return [
            ExportRow(float(t), float(v), b, None if q < 0 else int(q), u, f)
            for t, v, b, q, u, f in rows
        ]

    def prune(self, before: float, keep_per_series: int) -> int:
        conn = self._conn()
        with conn.transaction():
            dropped = conn.execute("DELETE FROM samples WHERE ts < %s", (before,)).rowcount
            conn.execute("DELETE FROM readings WHERE ts < %s", (before,))
            conn.execute("DELETE FROM rollups WHERE bucket < %s", (before,))
            for (series,) in conn.execute("SELECT id FROM series").fetchall():
                dropped += conn.execute(
                    "DELETE FROM samples WHERE series = %(s)s AND ts < (SELECT ts FROM samples "
                    "WHERE series = %(s)s ORDER BY ts DESC LIMIT 1 OFFSET %(k)s)",
                    {"s": series, "k": keep_per_series - 1},
                ).rowcount
        return dropped

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
