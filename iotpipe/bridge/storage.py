"""The spool's policy: what the bridge does when its spool cannot be written or is damaged.

The bridge never stops on its spool. While the spool cannot be written (the disk is full,
the directory became read-only, an I/O error) the bridge goes on reading the port —
commands, answers and status still work — but stores no reading: each batch is counted as
``not_stored{<reason>}`` and dropped, because the board keeps its recent readings in its
ring and is asked to send them again (a replay after the last committed mark) once a
write succeeds. A write is tried again every ``RETRY_S`` seconds, so the bridge recovers
by itself when space returns; a start on a full disk waits the same way for the spool to
open. A damaged spool file (not a database, failing SQLite's quick check, or reported
malformed during a write) is renamed ``spool.sqlite.damaged-<UTC time>`` — kept, never
deleted — and a new spool is started in its place. Each change of state is one log line.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from iotpipe.bridge.spool import FILE_NAME, Spool, SpoolError
from iotpipe.bridge.statelog import changed
from iotpipe.counters import Counters

log = logging.getLogger(__name__)

RETRY_S = 2.0
DAMAGED_SUFFIX = ".damaged-"


def set_aside(path: Path, now: datetime | None = None) -> Path:
    """Rename a damaged SQLite file (and its -wal/-shm) to a name that says so."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}{DAMAGED_SUFFIX}{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{DAMAGED_SUFFIX}{stamp}-{n}")
    for extra in ("-wal", "-shm"):
        side = path.with_name(path.name + extra)
        if side.exists():
            side.replace(target.with_name(target.name + extra))
    path.replace(target)
    return target


def damaged_files(directory: Path) -> list[Path]:
    """Spool files set aside as damaged, oldest first (for `iotpipe doctor`)."""
    return sorted(
        p
        for p in directory.glob(f"{FILE_NAME}{DAMAGED_SUFFIX}*")
        if not p.name.endswith(("-wal", "-shm"))
    )


def spool_problem(directory: Path) -> str | None:
    """What is wrong with the spool file in ``directory``, read-only (None: nothing, or no
    spool there)."""
    path = directory / FILE_NAME
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            check = db.execute("PRAGMA quick_check(1)").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        return f"{path}: {exc}"
    return None if check == "ok" else f"{path}: {check}"


def _no_space(directory: Path) -> bool:
    try:
        return os.statvfs(directory).f_bavail == 0
    except OSError:
        return False


class Storage:
    """The spool as the bridge uses it: present and writable, or waiting to be."""

    def __init__(self, directory: Path, max_bytes: int, counters: Counters) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.counters = counters
        self.spool: Spool | None = None
        self.problem: str | None = None  # the reason writes fail now, None when they work
        self._next_try = 0.0
        self.generation = 0  # +1 each time a (new) spool file is opened
        self.open()

    @property
    def writable(self) -> bool:
        return self.spool is not None and self.problem is None

    def due(self, now: float) -> bool:
        """A write may be tried: the spool works, or the next retry is due."""
        return self.writable or now >= self._next_try

    def open(self) -> bool:
        """Open the spool if it is not open; True if it opened now."""
        if self.spool is not None:
            return False
        try:
            self.spool = Spool(self.directory, self.max_bytes)
        except SpoolError as exc:
            if exc.reason != "damaged":
                self.failed(exc)
                return False
            self._replace_damaged(exc)
            try:
                self.spool = Spool(self.directory, self.max_bytes)
            except SpoolError as again:
                self.failed(again)
                return False
        self.generation += 1
        self.succeeded()
        return True

    def failed(self, exc: SpoolError) -> None:
        """A spool operation raised: note the state, replace a damaged file."""
        self._next_try = time.monotonic() + RETRY_S
        if exc.reason == "io_error" and _no_space(self.directory):
            # SQLite reports a full disk met while growing its -shm file as an I/O error.
            exc = SpoolError("disk_full", f"{exc.detail} (no space left on the device)")
        if exc.reason == "disk_full" and self.spool is not None:
            self.spool.checkpoint()  # what the WAL holds may be all the space there is
        if exc.reason == "damaged" and self.spool is not None:
            self.spool.close()
            self.spool = None
            self._replace_damaged(exc)
            self.open()
            return
        if self.problem != exc.reason:
            self.problem = exc.reason
            self.counters.inc("spool_errors", exc.reason)
            changed(
                log,
                "spool_cannot_write",
                logging.ERROR,
                spool=self.directory / FILE_NAME,
                reason=exc.reason,
                error=exc.detail,
                then=f"reading the port, storing nothing, retrying every {RETRY_S:g} s; "
                "the board is asked to send again what it still holds",
            )

    def succeeded(self) -> bool:
        """A write worked; True if that ends a time of failures."""
        if self.problem is None:
            return False
        changed(log, "spool_writable", spool=self.directory / FILE_NAME, was=self.problem)
        self.problem = None
        return True

    def _replace_damaged(self, exc: SpoolError) -> None:
        path = self.directory / FILE_NAME
        try:
            kept = set_aside(path)
        except OSError as err:
            problem = f"{path} is damaged and cannot be renamed: {err}"
            self.failed(SpoolError("cannot_open", problem))
            return
        self.counters.inc("spool_damaged")
        changed(
            log,
            "spool_damaged",
            logging.ERROR,
            spool=path,
            error=exc.detail,
            kept_as=kept,
            then="starting a new spool; the readings still in the damaged file are not sent",
        )

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None
