"""Pure parts of the dashboard: durations, HTTP parameters, gap and bucket arithmetic,
the writer queue's back-pressure."""

from __future__ import annotations

import threading
import time

import pytest

from iotpipe.counters import Counters
from iotpipe.dashboard import writer as writer_module
from iotpipe.dashboard.api import is_late
from iotpipe.dashboard.params import BadRequest, parse_range
from iotpipe.dashboard.series import flatten, resolution_for, with_gaps
from iotpipe.dashboard.store import Bucket, rollup_rows
from iotpipe.durations import parse_duration
from iotpipe.topics import Telemetry


def test_durations_read_as_people_write_them() -> None:
    assert parse_duration("365d") == 365 * 86400
    assert parse_duration("12h") == 43200
    assert parse_duration("90") == 90
    for bad in ("0d", "-1d", "1y", "", "d"):
        with pytest.raises(ValueError, match="duration above 0"):
            parse_duration(bad)


def test_late_means_three_announced_intervals_missed_plus_slack() -> None:
    now = 1_000.0
    assert is_late(now - 36, 10_000, now)  # 3 x 10 s + 5 s slack, and one more
    assert not is_late(now - 34, 10_000, now)
    assert not is_late(None, 10_000, now)  # no reading yet: nothing to be late after
    assert not is_late(now - 10**6, None, now)  # no meta: the interval is unknown
    assert not is_late(now - 10**6, True, now)  # not a whole number of ms


def test_a_missing_range_means_the_last_hour() -> None:
    rng = parse_range({}, now=10_000.0)
    assert (rng.since, rng.until, rng.points) == (10_001.0 - 3600, 10_001.0, 1000)


@pytest.mark.parametrize(
    ("args", "word"),
    [
        ({"since": "nan"}, "'since'"),
        ({"until": "inf"}, "'until'"),
        ({"points": "1"}, "'points'"),
        ({"points": "-3"}, "'points'"),
        ({"since": "5", "until": "5"}, "'since'"),
    ],
)
def test_bad_range_parameters_name_themselves(args: dict[str, str], word: str) -> None:
    with pytest.raises(BadRequest, match=word):
        parse_range(args, now=10_000.0)


def test_the_coarsest_rollup_that_fits_a_bucket_is_chosen() -> None:
    assert resolution_for(59.9) == 0
    assert resolution_for(60) == 60
    assert resolution_for(3599) == 60
    assert resolution_for(86400) == 3600


def test_min_and_max_come_out_in_the_order_they_happened() -> None:
    assert flatten([Bucket(5, 1.0, 2, 9.0), Bucket(11, 3.0, 11, 3.0)]) == [
        (2, 9.0),
        (5, 1.0),
        (11, 3.0),
    ]


def test_a_pause_far_longer_than_usual_becomes_one_gap() -> None:
    points = [(float(t), 1.0) for t in [0, 1, 2, 3, 100, 101, 102]]
    t, v = with_gaps(points)
    assert v == [1.0, 1.0, 1.0, 1.0, None, 1.0, 1.0, 1.0]
    assert t[4] == 51.5


def test_rollups_sum_minutes_into_hours() -> None:
    rows = rollup_rows([(1, 0.0, 5.0), (1, 30.0, 7.0), (1, 61.0, -1.0), (2, 3600.0, 4.0)])
    assert sorted(rows) == [
        (1, 60, 0, 2, 12.0, 5.0, 7.0),
        (1, 60, 60, 1, -1.0, -1.0, -1.0),
        (1, 3600, 0, 3, 11.0, -1.0, 7.0),
        (2, 60, 3600, 1, 4.0, 4.0, 4.0),
        (2, 3600, 3600, 1, 4.0, 4.0, 4.0),
    ]


def test_a_full_writer_queue_makes_ingest_wait_instead_of_dropping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(writer_module, "QUEUE_LIMIT", 3)
    counters = Counters("t")
    w = writer_module.Writer(None, counters, writer_module.Retention(None, 10), print)  # type: ignore[arg-type]
    reading = Telemetry("d", "0a1b2c3d", 1, 1.0, 1, {"t": 1.0})
    for _ in range(3):
        w.put(reading)
    taken = threading.Timer(0.2, w.queue.get)
    taken.start()
    started = time.monotonic()
    w.put(reading)  # waits until the timer has taken one
    assert time.monotonic() - started >= 0.15
    assert w.queue.qsize() == 3
    taken.join()
