"""The history store keeps every value honestly: readings sharing a receipt time, a second
copy with other values, a seq that went back, and a file written by the previous release
(main at 1b120ab), against real SQLite files (and PostgreSQL where one can be started)."""

from __future__ import annotations

import ast
import sqlite3
import subprocess
import sys
from pathlib import Path

from iotpipe.dashboard.export_rows import rows
from iotpipe.dashboard.store import CONFLICTING_DUPLICATE, SEQ_BACKWARDS, Store, open_store
from iotpipe.topics import Telemetry
from tests import test_dashboard_support as support
from tests.test_dashboard_support import BOOT, reading

postgres = support.postgres  # fixture
store = support.store  # fixture
store_location = support.store_location  # fixture

T0 = 1_699_999_200.0


def exported(s: Store, device: str, metric: str = "temperature") -> list[tuple[object, ...]]:
    return [r[3:] for r in rows(s, device, [metric], 0, T0 + 10_000)]


def test_readings_with_one_receipt_time_keep_every_value(store: Store) -> None:
    # The bridge stamps every line of one read from the port with the same time.
    store.write([reading("a", i, T0, temperature=float(i)) for i in range(5)])
    assert [v for _, v in store.raw("a", "temperature", 0, T0 + 1, 100)] == [0, 1, 2, 3, 4]
    assert exported(store, "a") == [(float(i), BOOT, i, i * 1000, None) for i in range(5)]


def test_a_second_copy_with_other_values_is_refused_not_taken_for_a_duplicate(
    store: Store,
) -> None:
    store.write([reading("a", 1, T0, temperature=1.0)])
    again = store.write(
        [reading("a", 1, T0, temperature=1.0), reading("a", 1, T0, temperature=9.0)]
    )
    assert list(again) == []
    assert [(r.metrics, why) for r, why in again.refused] == [
        ({"temperature": 9.0}, CONFLICTING_DUPLICATE)
    ]
    assert store.raw("a", "temperature", 0, T0 + 1, 10) == [(T0, 1.0)]


def test_a_seq_that_went_back_within_a_boot_is_stored_and_flagged(store: Store) -> None:
    store.write([reading("a", 5, T0), reading("a", 6, T0 + 1)])
    late = store.write([reading("a", 3, T0 + 2), reading("a", 7, T0 + 3)])
    assert [(r.seq, why) for r, why in late.flagged] == [(3, SEQ_BACKWARDS)]
    flags = {seq: flag for _, _, seq, _, flag in exported(store, "a")}
    assert flags == {5: None, 6: None, 3: SEQ_BACKWARDS, 7: None}
    other_boot = store.write([reading("a", 0, T0 + 4, boot="00000002")])
    assert other_boot.flagged == []


# What iotpipe/dashboard/sqlite_store.py of main at 1b120ab created (schema version 0).
OLD_SCHEMA = """
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


def old_history(data: Path, n: int) -> None:
    """A history file as 1b120ab wrote it: n readings of one device, two metrics."""
    data.mkdir(parents=True)
    db = sqlite3.connect(data / "history.sqlite3")
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(OLD_SCHEMA)
    with db:
        db.execute("INSERT INTO series VALUES (1, 'old', 'temperature'), (2, 'old', 'humidity')")
        db.execute(
            "INSERT INTO devices VALUES ('old', 'online', NULL, ?, '{\"temperature\": 1.0}')",
            (T0 + n - 1,),
        )
        for i in range(n):
            db.execute("INSERT INTO readings VALUES ('old', ?, ?, ?)", (BOOT, i, T0 + i))
            db.execute("INSERT INTO samples VALUES (1, ?, ?)", (T0 + i, 20 + i / 10))
            db.execute("INSERT INTO samples VALUES (2, ?, ?)", (T0 + i, 50 - i / 10))
    db.close()


def test_a_history_file_of_the_previous_release_opens_migrated_with_every_value(
    tmp_path: Path,
) -> None:
    data = tmp_path / "dashboard"
    old_history(data, 300)
    migrated = open_store(data)
    try:
        assert exported(migrated, "old") == [(20 + i / 10, BOOT, i, None, None) for i in range(300)]
        humidity = migrated.raw("old", "humidity", 0, T0 + 1000, 1000)
        assert humidity == [(T0 + i, 50 - i / 10) for i in range(300)]
        # Redelivered readings of the old file are still recognised; new ones are kept.
        same = {"temperature": 20 + 5 / 10, "humidity": 50 - 5 / 10}
        again = migrated.write([Telemetry("old", BOOT, 5, T0 + 5, 5, same)])
        assert list(again) == [] and again.refused == []
        other = migrated.write([Telemetry("old", BOOT, 6, T0 + 6, 6, same)])
        assert [why for _, why in other.refused] == ["conflicting_duplicate"]
        new = migrated.write([Telemetry("old", BOOT, 300, T0 + 300, 300_000, {"temperature": 1.5})])
        assert [r.seq for r in new] == [300]
        assert exported(migrated, "old")[-1] == (1.5, BOOT, 300, 300_000, None)
    finally:
        migrated.close()
    version = sqlite3.connect(data / "history.sqlite3").execute("PRAGMA user_version")
    assert version.fetchone() == (1,)
    assert (data / "history.sqlite3").stat().st_mode & 0o077 == 0


DASHBOARD = Path(__file__).parent.parent / "iotpipe" / "dashboard"


def test_the_dashboard_reads_no_private_name_of_a_library() -> None:
    found = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "SLF", "--no-cache", str(DASHBOARD)],
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0, found.stdout


def test_the_dashboard_overrides_no_private_method_of_a_library_class() -> None:
    """A class deriving from another module's class (``mqtt.Client``…) defines no
    ``_name`` method: that would override the library's internals, which ruff cannot see."""
    overrides = [
        f"{path.name}: {node.name}.{item.name}"
        for path in sorted(DASHBOARD.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and any(isinstance(b, ast.Attribute) for b in node.bases)
        for item in node.body
        if isinstance(item, ast.FunctionDef)
        and item.name.startswith("_")
        and not item.name.endswith("__")
    ]
    assert overrides == []


def test_a_reading_and_its_values_are_committed_together(tmp_path: Path) -> None:
    """A write that fails after the readings' rows leaves none of them: a reading stored
    without its values would refuse every later copy as a conflicting duplicate."""
    store = open_store(str(tmp_path / "data"))
    try:
        store.write([reading("a", 0, T0, temperature=1.0)])
        with sqlite3.connect(tmp_path / "data" / "history.sqlite3") as conn:
            conn.execute(
                "CREATE TRIGGER fail BEFORE INSERT ON samples BEGIN SELECT RAISE(ABORT, 'x'); END"
            )
        batch = [reading("a", i, T0 + i, temperature=float(i)) for i in (1, 2)]
        try:
            store.write(batch)
        except sqlite3.DatabaseError:
            pass
        else:
            raise AssertionError("the write should have failed at its samples")
        with sqlite3.connect(tmp_path / "data" / "history.sqlite3") as conn:
            assert conn.execute("SELECT seq FROM readings").fetchall() == [(0,)]
            conn.execute("DROP TRIGGER fail")
        store.write(batch)  # the broker delivers them again: now they are stored, values too
        values = [1.0, 1.0, 2.0]
        assert exported(store, "a") == [(values[i], BOOT, i, i * 1000, None) for i in range(3)]
    finally:
        store.close()
