"""A damaged SQLite history file: found at start, kept aside under a name that says so.

The check is SQLite's ``PRAGMA quick_check`` (the b-trees and their pages, not the index
contents: seconds for a year of readings on a Raspberry Pi). A damaged file is renamed
``history.sqlite3.damaged-<UTC time>`` (its ``-wal`` and ``-shm`` beside it, renamed alike)
and the dashboard starts a new store, so readings keep being stored instead of waiting in
the broker until someone acts; the log says which file and the exact command that recovers
what it still holds (docs/dashboard.md, "A damaged history file").
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIXES = ("", "-wal", "-shm")


def problem(path: Path, read_only: bool = False) -> str | None:
    """What is wrong with the SQLite file at ``path``, or None when it is sound (or absent)."""
    if not path.is_file():
        return None
    target = f"file:{path}?mode=ro" if read_only else str(path)
    try:
        conn = sqlite3.connect(target, uri=read_only, timeout=30)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    found = [str(r[0]) for r in rows]
    return None if found == ["ok"] else "; ".join(found[:3])


def recover_command(damaged: Path) -> str:
    recovered = damaged.parent / "recovered"
    return (
        f"mkdir -p {recovered} && sqlite3 {damaged} .recover | "
        f"sqlite3 {recovered}/history.sqlite3 && "
        f"iotpipe export --data {recovered} --device ID"
    )


def keep_aside(path: Path, why: str) -> Path:
    """Rename the damaged file (and its WAL) out of the way; return its new name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in SUFFIXES:
        part = Path(f"{path}{suffix}")
        if part.exists():
            part.rename(f"{aside}{suffix}")
    log.error(
        "history file %s is damaged (%s): kept aside as %s and started a new, empty store. "
        "To read what it still holds: %s",
        path,
        why,
        aside,
        recover_command(aside),
    )
    return aside


def kept_aside(data: Path) -> list[Path]:
    """Damaged history files kept aside in a data directory, oldest first."""
    return sorted(p for p in data.glob("history.sqlite3.damaged-*") if p.name[-4:] not in SUFFIXES)
