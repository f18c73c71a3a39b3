"""A chart's worth of one metric: at most ``points`` points that look like the full data.

Few enough raw samples are returned as they are. Otherwise the range is cut into
``points // 2`` buckets and each gives its minimum and its maximum, in the order they
occurred, so a one-sample spike survives any zoom level. Buckets a minute or an hour wide
are answered from the rollups rather than the samples, so a year costs about what a day
does. A stretch with no readings (the board was off) becomes a ``None`` between the points
around it, which plotly draws as a gap instead of a straight line across.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from iotpipe.dashboard.store import ROLLUP_RESOLUTIONS, Bucket, Store

MAX_POINTS = 10_000
DEFAULT_POINTS = 1_000
GAP_FACTOR = 3.0
"""A pause longer than this many usual spacings is a gap, not a slow stretch."""


@dataclass(frozen=True, slots=True)
class Series:
    t: list[float]
    v: list[float | None]
    source: str  # "raw", "samples", "rollup-60" or "rollup-3600": how it was answered


def resolution_for(width: float) -> int:
    """The coarsest rollup (seconds) no wider than a display bucket; 0 means raw samples."""
    fitting = [res for res in ROLLUP_RESOLUTIONS if res <= width]
    return max(fitting, default=0)


def flatten(buckets: Sequence[Bucket]) -> list[tuple[float, float]]:
    """Each bucket's min and max as points in time order (one point if they are one).

    From rollups both carry the rollup's time, and are drawn as a vertical stroke."""
    points: list[tuple[float, float]] = []
    for b in buckets:
        if b.t_min == b.t_max and b.v_min == b.v_max:
            points.append((b.t_min, b.v_min))
        elif b.t_min <= b.t_max:
            points += [(b.t_min, b.v_min), (b.t_max, b.v_max)]
        else:
            points += [(b.t_max, b.v_max), (b.t_min, b.v_min)]
    return points


def with_gaps(
    points: Sequence[tuple[float, float]], width: float = 0.0
) -> tuple[list[float], list[float | None]]:
    """Split into t and v, with a ``None`` wherever the spacing jumps far above normal."""
    t: list[float] = []
    v: list[float | None] = []
    if not points:
        return t, v
    steps = sorted(b[0] - a[0] for a, b in itertools.pairwise(points))
    usual = steps[len(steps) // 2] if steps else 0.0
    threshold = GAP_FACTOR * max(width, usual)
    previous = points[0][0]
    for ts, value in points:
        if threshold > 0 and ts - previous > threshold:
            t.append(round(previous + (ts - previous) / 2, 3))
            v.append(None)
        t.append(round(ts, 3))
        v.append(value)
        previous = ts
    return t, v


def query(
    store: Store, device: str, metric: str, since: float, until: float, points: int
) -> Series:
    raw = store.raw(device, metric, since, until, points + 1)
    if len(raw) <= points:
        t, v = with_gaps(raw)
        if len(t) <= points:
            return Series(t, v, "raw")
    width = (until - since) / max(1, points // 2)
    res = resolution_for(width)
    buckets = store.buckets(device, metric, since, until, width, res)
    clipped = [(min(max(ts, since), until), val) for ts, val in flatten(buckets)]
    t, v = with_gaps(clipped, width)
    return Series(t, v, f"rollup-{res}" if res else "samples")
