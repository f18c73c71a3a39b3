"""The history store and the series it answers, against a real database file (and a real
PostgreSQL server where one can be started)."""

from __future__ import annotations

import math

from iotpipe.dashboard import series
from iotpipe.dashboard.store import Store, open_store
from tests import test_dashboard_support as support
from tests.test_dashboard_support import reading

postgres = support.postgres  # fixture
store = support.store  # fixture
store_location = support.store_location  # fixture

T0 = 1_699_999_200.0  # a whole hour


def test_a_redelivered_reading_is_stored_once(store: Store) -> None:
    first = store.write([reading("a", 1, T0), reading("a", 2, T0 + 1)])
    again = store.write([reading("a", 2, T0 + 1), reading("a", 3, T0 + 2)])
    assert [r.seq for r in first] == [1, 2]
    assert [r.seq for r in again] == [3]
    assert len(store.raw("a", "temperature", 0, T0 + 10, 100)) == 3


def test_the_same_seq_after_a_reboot_is_a_new_reading(store: Store) -> None:
    store.write([reading("a", 0, T0, boot="00000001")])
    fresh = store.write([reading("a", 0, T0 + 5, boot="00000002")])
    assert len(fresh) == 1


def test_history_survives_reopening_the_store(store_location: str) -> None:
    first = open_store(store_location)
    first.write([reading("a", i, T0 + i, temperature=float(i)) for i in range(10)])
    first.set_status("a", "online")
    first.set_meta("a", {"units": {"temperature": "°C"}})
    first.close()
    second = open_store(store_location)
    try:
        assert len(second.raw("a", "temperature", 0, T0 + 100, 100)) == 10
        (device,) = second.devices()
        assert (device.id, device.status, device.last_ts) == ("a", "online", T0 + 9)
        assert device.last == {"temperature": 9.0}
        assert device.meta == {"units": {"temperature": "°C"}}
        assert second.metrics("a") == ["temperature"]
    finally:
        second.close()


def test_few_readings_come_back_as_they_are(store: Store) -> None:
    store.write([reading("a", i, T0 + i, temperature=float(i)) for i in range(5)])
    got = series.query(store, "a", "temperature", T0, T0 + 10, 100)
    assert got.source == "raw"
    assert got.t == [T0 + i for i in range(5)]
    assert got.v == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_downsampling_keeps_a_one_sample_spike_and_the_point_limit(store: Store) -> None:
    values = [math.sin(i / 50) for i in range(5000)]
    values[3333] = 100.0
    values[4444] = -100.0
    store.write([reading("a", i, T0 + i, temperature=v) for i, v in enumerate(values)])
    got = series.query(store, "a", "temperature", T0, T0 + 5000, 200)
    assert got.source == "samples"
    assert len(got.t) <= 200
    assert 100.0 in got.v and -100.0 in got.v
    assert got.t == sorted(got.t)
    assert got.t[got.v.index(100.0)] == T0 + 3333


def test_a_long_range_is_answered_from_hourly_rollups(store: Store) -> None:
    # 4 days at one reading a minute, a spike on day 3.
    rows = [reading("a", i, T0 + 60 * i, temperature=float(i % 10)) for i in range(4 * 1440)]
    rows[3 * 1440 + 7] = reading("a", 3 * 1440 + 7, T0 + 60 * (3 * 1440 + 7), temperature=99.0)
    store.write(rows)
    got = series.query(store, "a", "temperature", T0, T0 + 4 * 86400, 100)
    assert got.source == "rollup-3600"
    assert len(got.t) <= 100
    assert max(v for v in got.v if v is not None) == 99.0
    assert min(v for v in got.v if v is not None) == 0.0
    minute = series.query(store, "a", "temperature", T0, T0 + 86400, 1000)
    assert minute.source == "rollup-60"


def test_a_stretch_without_readings_is_a_gap_not_a_line(store: Store) -> None:
    before = [reading("a", i, T0 + i) for i in range(50)]
    after = [reading("a", 100 + i, T0 + 600 + i) for i in range(50)]
    store.write(before + after)
    got = series.query(store, "a", "temperature", T0, T0 + 700, 1000)
    assert got.v.count(None) == 1
    gap = got.v.index(None)
    assert T0 + 49 < got.t[gap] < T0 + 600


def test_a_gap_shows_at_coarse_resolution_too(store: Store) -> None:
    before = [reading("a", i, T0 + i, temperature=i % 7) for i in range(3000)]
    after = [reading("a", 6000 + i, T0 + 6000 + i, temperature=i % 7) for i in range(3000)]
    store.write(before + after)
    got = series.query(store, "a", "temperature", T0, T0 + 9000, 20)
    assert got.source == "rollup-60"
    assert got.v.count(None) == 1 and len(got.t) <= 20
    assert T0 + 3000 < got.t[got.v.index(None)] < T0 + 6000


def test_pruning_drops_old_samples_and_keeps_the_newest_per_series(store: Store) -> None:
    store.write([reading("a", i, T0 + i, temperature=float(i)) for i in range(100)])
    dropped = store.prune(before=T0 + 10, keep_per_series=50)
    assert dropped == 50
    left = store.raw("a", "temperature", 0, T0 + 1000, 1000)
    assert [t for t, _ in left] == [T0 + i for i in range(50, 100)]


def test_an_unknown_series_is_empty(store: Store) -> None:
    assert store.raw("nobody", "temperature", 0, T0, 10) == []
    assert store.buckets("nobody", "temperature", 0, T0, 60.0, 0) == []
