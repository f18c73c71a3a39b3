"""`iotpipe export --device ID`: a device's history from the dashboard's store, as CSV or
Parquet, through the store's public interface (``iotpipe.dashboard.store.Store``).

Rows are ``ts,device,metric,value,boot,seq,uptime_ms,flag`` (ts: the receipt time in Unix
seconds UTC; boot, seq and uptime_ms: the reading's identity and the board's own clock, so
completeness and order can be checked without the database; flag: why a reading is marked,
e.g. ``seq_backwards``), metric by metric, oldest first, read in batches so a year of
readings never sits in memory. The first four columns are those of earlier releases, in
the same order, so what read an older export reads this one. Parquet needs pyarrow, which is
optional (``pip install pyarrow``).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from iotpipe.dashboard.export_rows import BATCH, COLUMNS, Row, csv_fields, rows
from iotpipe.durations import parse_duration
from iotpipe.errors import UserError
from iotpipe.settings import add_settings

if TYPE_CHECKING:
    from iotpipe.dashboard.store import Store


def moment(text: str) -> float:
    """Unix seconds, an ISO 8601 date or time (UTC unless it says), or an age like 7d."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return time.time() - parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} must be Unix seconds, a date such as 2026-11-20 or 2026-11-20T08:00, "
            "or an age such as 7d or 12h"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", required=True, metavar="ID", help="the device to export")
    add_settings(parser, "data", "store", "log-level")
    parser.add_argument("--metric", metavar="NAME", help="only this metric (default: all)")
    parser.add_argument(
        "--format", choices=("csv", "parquet"), default="csv", help="file format (default: csv)"
    )
    when = "Unix seconds, ISO date/time (UTC unless it says), or an age like 7d"
    parser.add_argument(
        "--since", type=moment, default=0.0, metavar="WHEN", help=f"from: {when} (default: all)"
    )
    parser.add_argument(
        "--until", type=moment, default=None, metavar="WHEN", help="until, the same (default: now)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE",
        help="file to write (default: stdout for csv, ID.parquet)",
    )


def open_history(args: argparse.Namespace) -> Store:
    from iotpipe.dashboard.store import open_store

    if args.store:
        return open_store(args.store)
    data: Path = args.data
    if not (data / "history.sqlite3").is_file() and (data / "dashboard").is_dir():
        data = data / "dashboard"  # `iotpipe up` keeps the dashboard's data in DATA/dashboard
    if not (data / "history.sqlite3").is_file():
        raise UserError(
            f"no dashboard history in {data} — pass the dashboard's --data directory "
            "(or --store for PostgreSQL)"
        )
    from iotpipe.dashboard import damaged

    why = damaged.problem(data / "history.sqlite3", read_only=True)
    if why is not None:  # the dashboard keeps it aside at its next start; export leaves it
        raise UserError(
            f"{data / 'history.sqlite3'} is damaged ({why}) — to read what it still holds: "
            f"{damaged.recover_command(data / 'history.sqlite3')}"
        )
    return open_store(data)


class Progress:
    """``N rows`` on stderr while writing: rewritten in place on a terminal, else sparse."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream, self.count, self.tty = stream, 0, stream.isatty()
        self.shown_at = time.monotonic()  # quiet for an export that takes no time

    def done(self, text: str) -> None:
        clear = "\r\033[K" if self.tty and self.count else ""
        print(clear + text, file=self.stream, flush=True)

    def step(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if now - self.shown_at >= (0.2 if self.tty else 5.0):
            self.shown_at = now
            end = "\r" if self.tty else "\n"
            print(f"  {self.count:,} rows…", end=end, file=self.stream, flush=True)


def write_csv(out: TextIO, source: Iterator[Row], progress: Progress) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in source:
        writer.writerow(csv_fields(row))
        progress.step()


def write_parquet(path: Path, source: Iterator[Row], progress: Progress) -> None:
    try:
        import pyarrow as pa  # type: ignore[import-untyped, import-not-found, unused-ignore]
        import pyarrow.parquet as pq  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        raise UserError(
            "--format parquet needs pyarrow, which is not installed — "
            "`pip install pyarrow` (in iotpipe's environment), or use --format csv"
        ) from None
    number, text, whole = pa.float64(), pa.string(), pa.int64()
    types = (number, text, text, number, text, whole, whole, text)
    schema = pa.schema(list(zip(COLUMNS, types, strict=True)))
    with pq.ParquetWriter(str(path), schema) as writer:
        for chunk in _chunks(source):
            columns = [list(column) for column in zip(*chunk, strict=True)]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
            progress.step(len(chunk))


def _chunks(source: Iterator[Row]) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in source:
        chunk.append(row)
        if len(chunk) == BATCH:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _chosen_metrics(store: Store, device: str, metric: str | None) -> list[str]:
    known = {d.id for d in store.devices()}
    if device not in known:
        raise UserError(
            f"no device {device!r} in the history — known: {', '.join(sorted(known)) or 'none'}"
        )
    metrics = store.metrics(device)
    if metric is not None and metric not in metrics:
        raise UserError(f"{device} has no metric {metric!r} — it has: {', '.join(metrics)}")
    return [metric] if metric else metrics


def run(args: argparse.Namespace) -> int:
    until = args.until if args.until is not None else time.time() + 1
    store = open_history(args)
    progress = Progress()
    try:
        metrics = _chosen_metrics(store, args.device, args.metric)
        source = rows(store, args.device, metrics, args.since, until)
        out: Path | None = args.out
        if args.format == "parquet":
            out = out or Path(f"{args.device}.parquet")
            write_parquet(out, source, progress)
        else:
            _write_csv_to(out, source, progress)
    finally:
        store.close()
    where = out if out else "stdout"
    progress.done(f"wrote {progress.count:,} rows of {args.device} to {where}")
    return 0


def _write_csv_to(out: Path | None, source: Iterator[Row], progress: Progress) -> None:
    with ExitStack() as stack:
        stream: TextIO = stack.enter_context(out.open("w", newline="")) if out else sys.stdout
        write_csv(stream, source, progress)
