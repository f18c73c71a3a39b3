"""The history store's one interface, and what every backend shares.

Two backends implement :class:`Store`: SQLite (the embedded default, ``sqlite_store``) and
PostgreSQL (``pg_store``, for a store shared by several dashboards). Everything above the
store (ingest, the series API) sees only this Protocol.

Layout, the same in both: ``readings`` holds the key ``(device, boot, seq)`` of every reading
kept, which is how a redelivered reading is recognised, with its board uptime and a flag
(see :class:`Written`); ``samples`` holds one row per (series, ts, seq) where a series is
one device's metric (seq in the key: readings the bridge read in one go share their receipt
time, and none may overwrite another); ``rollups`` keeps count, sum, min and max per series
per minute and per hour, updated with every batch, so a long range is answered from a few
thousand rollup rows instead of millions of samples.

Schema versions: 0 is what 1b120ab wrote (samples keyed by (series, ts), no uptime or flag);
1 is the layout above. Opening a store migrates it in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from iotpipe.errors import UserError
from iotpipe.topics import Telemetry

ROLLUP_RESOLUTIONS = (60, 3600)
"""Seconds per rollup bucket: per minute and per hour."""


@dataclass(frozen=True, slots=True)
class DeviceRow:
    id: str
    status: str | None
    meta: dict[str, Any] | None
    last_ts: float | None
    last: dict[str, float]


@dataclass(frozen=True, slots=True)
class Bucket:
    """One display bucket: its smallest and largest value and when each occurred."""

    t_min: float
    v_min: float
    t_max: float
    v_max: float


SEQ_BACKWARDS = "seq_backwards"
"""Flag of a reading stored after a later seq of its boot (a replayed gap fill, or a board
whose counter went back): kept, counted and shown in the export, never hidden."""
CONFLICTING_DUPLICATE = "conflicting_duplicate"
"""Reason a second copy of (device, boot, seq) with other values is refused: the first
copy stays, the conflict is counted and logged, never taken for a plain redelivery."""


class Written(list[Telemetry]):
    """The readings a write stored (those not seen before), and what it refused or flagged."""

    def __init__(self, fresh: Iterable[Telemetry] = ()) -> None:
        super().__init__(fresh)
        self.refused: list[tuple[Telemetry, str]] = []
        self.flagged: list[tuple[Telemetry, str]] = []


@dataclass(frozen=True, slots=True)
class ExportRow:
    """One sample with the identity and both clocks of the reading it came from."""

    ts: float
    value: float
    boot: str | None  # None only for samples an old store kept without their reading
    seq: int | None
    uptime_ms: int | None  # None for readings stored before schema version 1
    flag: str | None


def same_values(a: Telemetry, ts: float, uptime_ms: int | None, values: dict[str, float]) -> bool:
    """Whether a stored reading (its ts, uptime and values) is the same as ``a``."""
    return bool(a.ts == ts and uptime_ms in (None, a.uptime_ms) and a.metrics == values)


class Store(Protocol):
    def write(self, readings: Sequence[Telemetry]) -> Written:
        """Keep the readings not seen before (by device, boot, seq), in one transaction;
        return those, with any refused as conflicting and any flagged. Raises when it
        cannot write (nothing of the batch is then kept)."""

    def set_status(self, device: str, status: str) -> None: ...
    def set_meta(self, device: str, meta: dict[str, Any]) -> None: ...
    def devices(self) -> list[DeviceRow]: ...
    def metrics(self, device: str) -> list[str]: ...

    def raw(
        self, device: str, metric: str, since: float, until: float, limit: int
    ) -> list[tuple[float, float]]:
        """Up to ``limit`` samples with since <= ts < until, oldest first."""

    def buckets(
        self, device: str, metric: str, since: float, until: float, width: float, res: int
    ) -> list[Bucket]:
        """Min and max per ``width`` seconds, from samples (res 0) or rollups of ``res`` s."""

    def export(
        self, device: str, metric: str, after: tuple[float, int], until: float, limit: int
    ) -> list[ExportRow]:
        """Up to ``limit`` samples after the (ts, seq) ``after`` with ts < until, in
        (ts, seq) order, each with its reading's identity and clocks."""

    def prune(self, before: float, keep_per_series: int) -> int:
        """Drop samples older than ``before`` or beyond the newest ``keep_per_series`` of a
        series, and rollups older than ``before``; return the number of samples dropped."""

    def close(self) -> None: ...


def latest_per_device(readings: Iterable[Telemetry]) -> dict[str, Telemetry]:
    """Each device's newest reading (by receipt time) of a batch: its `last` row."""
    newest: dict[str, Telemetry] = {}
    for r in readings:
        if r.device not in newest or r.ts >= newest[r.device].ts:
            newest[r.device] = r
    return newest


def rollup_rows(
    samples: Iterable[tuple[int, float, float]],
) -> list[tuple[int, int, int, int, float, float, float]]:
    """(series, ts, value) → (series, res, bucket, n, sum, min, max), one row per bucket,
    so a batch upserts each minute and hour once however many samples fell in it. Hours
    are summed from the minutes: one dictionary update per sample, the hot path of ingest."""
    minutes: dict[tuple[int, int], list[float]] = {}
    for series, ts, value in samples:
        key = (series, int(ts // 60) * 60)
        row = minutes.get(key)
        if row is None:
            minutes[key] = [1, value, value, value]
        else:
            row[0] += 1
            row[1] += value
            if value < row[2]:
                row[2] = value
            elif value > row[3]:
                row[3] = value
    hours: dict[tuple[int, int], list[float]] = {}
    for (series, minute), (n, total, lo, hi) in minutes.items():
        key = (series, minute // 3600 * 3600)
        row = hours.get(key)
        if row is None:
            hours[key] = [n, total, lo, hi]
        else:
            row[0] += n
            row[1] += total
            row[2] = min(row[2], lo)
            row[3] = max(row[3], hi)
    return [
        (series, res, bucket, int(n), total, lo, hi)
        for res, acc in ((60, minutes), (3600, hours))
        for (series, bucket), (n, total, lo, hi) in acc.items()
    ]


def open_store(location: str | Path) -> Store:
    """A ``postgresql://`` URL opens PostgreSQL; anything else is the SQLite data directory."""
    text = str(location)
    if text.startswith(("postgresql://", "postgres://")):
        try:
            from iotpipe.dashboard.pg_store import PostgresStore
        except ImportError as exc:  # psycopg without libpq, or not installed
            raise UserError(
                f"PostgreSQL support is not usable ({exc}) — pip install 'iotpipe[postgres]'"
            ) from None
        return PostgresStore(text)
    from iotpipe.dashboard import damaged
    from iotpipe.dashboard.sqlite_store import SQLiteStore

    path = Path(location) / "history.sqlite3"
    why = damaged.problem(path)
    if why is not None:
        damaged.keep_aside(path, why)
    return SQLiteStore(path)
