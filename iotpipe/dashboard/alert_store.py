"""Alert history and rule state, kept in the dashboard's history store (SQLite or PostgreSQL).

Two tables beside the readings, created when missing, so a store written before alerts
existed (main at 1b120ab) opens as it was: ``alert_history`` (one row per firing,
resolving, reminder or report, newest with the highest id) and ``alert_state`` (one JSON
row per rule, device and metric, which is how a restart neither forgets nor refires).
Its own connection, so the readings writer's transactions are never held up by alerts.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from iotpipe.dashboard.store import Store

HISTORY_KEEP = 100_000
"""Rows of alert history kept: bounded, the oldest go first."""
PAGE_LIMIT = 500

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS alert_history (
        id {serial}, ts DOUBLE PRECISION NOT NULL, rule TEXT NOT NULL, device TEXT NOT NULL,
        metric TEXT NOT NULL, state TEXT NOT NULL, body TEXT NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS alert_state (key TEXT PRIMARY KEY, body TEXT NOT NULL)",
]
UPSERT_STATE = (
    "INSERT INTO alert_state (key, body) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET body = excluded.body"
)


class AlertStore:
    """Thread-safe: one connection behind a lock (alerts are rare next to readings)."""

    def __init__(self, conn: Any, postgres: bool) -> None:
        self._conn = conn
        self._pg = postgres
        self._lock = threading.Lock()
        serial = "BIGSERIAL PRIMARY KEY" if postgres else "INTEGER PRIMARY KEY AUTOINCREMENT"
        for statement in SCHEMA:
            self._run(statement.format(serial=serial))

    @classmethod
    def beside(cls, store: Store) -> AlertStore:
        """The alert tables in the same database as ``store``."""
        path = getattr(store, "path", None)
        if isinstance(path, Path):
            conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 30000")
            return cls(conn, postgres=False)
        import psycopg

        from iotpipe.dashboard.pg_store import PostgresStore

        if not isinstance(store, PostgresStore):
            raise TypeError(f"no alert tables for a {type(store).__name__}")
        return cls(psycopg.connect(store.url, autocommit=True), postgres=True)

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self._pg:
            sql = sql.replace("?", "%s")
        with self._lock:
            cur = self._conn.execute(sql, params)
            rows = cur.fetchall() if cur.description else []
        return [tuple(r) for r in rows]

    def add(self, alert: dict[str, Any]) -> int:
        row = self._run(
            "INSERT INTO alert_history (ts, rule, device, metric, state, body) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (alert["ts"], alert["rule"], alert["device"], alert["metric"], alert["state"],
             json.dumps(alert)),
        )  # fmt: skip
        new_id = int(row[0][0])
        if new_id % 1000 == 0:  # now and then, not on every row
            self._run("DELETE FROM alert_history WHERE id <= ?", (new_id - HISTORY_KEEP,))
        return new_id

    def page(self, before: int | None, limit: int) -> list[dict[str, Any]]:
        """Newest first; ``before`` an id from the previous page."""
        limit = max(1, min(limit, PAGE_LIMIT))
        rows = self._run(
            "SELECT id, body FROM alert_history WHERE id < ? ORDER BY id DESC LIMIT ?",
            (before if before is not None else 2**62, limit),
        )
        return [{**json.loads(body), "id": int(i)} for i, body in rows]

    def after(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Oldest first: what the page has not seen yet."""
        rows = self._run(
            "SELECT id, body FROM alert_history WHERE id > ? ORDER BY id LIMIT ?",
            (after, max(1, min(limit, PAGE_LIMIT))),
        )
        return [{**json.loads(body), "id": int(i)} for i, body in rows]

    def save_states(self, states: dict[str, dict[str, Any]]) -> None:
        for key, body in states.items():
            self._run(UPSERT_STATE, (key, json.dumps(body)))

    def load_states(self) -> dict[str, dict[str, Any]]:
        return {k: json.loads(b) for k, b in self._run("SELECT key, body FROM alert_state")}

    def close(self) -> None:
        with self._lock:
            self._conn.close()
