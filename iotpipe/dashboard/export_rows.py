"""A device's history as export rows, shared by ``GET /api/devices/<id>/export.csv`` and
`iotpipe export`, so the two write the same columns in the same order.

Rows are read from the store in batches of :data:`BATCH`, metric by metric, oldest first,
so a year of readings never sits in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a type only: `iotpipe export --help` loads no store
    from iotpipe.dashboard.store import Store

BATCH = 10_000
COLUMNS = ("ts", "device", "metric", "value", "boot", "seq", "uptime_ms", "flag")
Row = tuple[float, str, str, float, str | None, int | None, int | None, str | None]


def rows(
    store: Store, device: str, metrics: list[str], since: float, until: float
) -> Iterator[Row]:
    for metric in metrics:
        after = (since, -2)  # before every seq, also -1 (a sample an old store kept alone)
        while True:
            batch = store.export(device, metric, after, until, BATCH)
            for r in batch:
                yield r.ts, device, metric, r.value, r.boot, r.seq, r.uptime_ms, r.flag
            if len(batch) < BATCH:
                break
            last = batch[-1]
            after = (last.ts, last.seq if last.seq is not None else -1)


def csv_fields(row: Row) -> list[str]:
    ts, device, metric, value, boot, seq, uptime, flag = row
    return [
        f"{ts:.3f}",
        device,
        metric,
        repr(value),
        boot or "",
        "" if seq is None else str(seq),
        "" if uptime is None else str(uptime),
        flag or "",
    ]
