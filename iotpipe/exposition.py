"""Prometheus metrics of a daemon, rendered by prometheus_client.

Each daemon declares the counters it keeps (name, help text, the reasons known in
advance) so that a scrape shows them at zero before their first event; a counter that
code counts without declaring it is still exported, with a help text that says so.
Every registry also has the process metrics and ``iotpipe_build_info``.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

import iotpipe
from iotpipe.counters import Counters

CONTENT_TYPE = CONTENT_TYPE_LATEST


@dataclass(frozen=True)
class Declared:
    """A counter's help text; ``reasons``: label values shown at zero before any event.
    ``labelled``: counted only with a reason, so no unlabelled zero sample."""

    help: str
    reasons: tuple[str, ...] = ()
    labelled: bool = False


@dataclass(frozen=True)
class Gauge:
    help: str
    read: Callable[[], float]


class CountersCollector:
    def __init__(self, counters: Counters, declared: Mapping[str, Declared]) -> None:
        self.counters = counters
        self.declared = declared

    def collect(self) -> Iterable[Metric]:
        values = self.counters.values()
        for name in sorted(set(self.declared) | {n for n, _ in values}):
            what = self.declared.get(name) or Declared(f"{name} (not described yet)")
            counts = {r: 0 for r in what.reasons}
            if not (what.labelled or what.reasons):
                counts[""] = 0
            counts.update((r, v) for (n, r), v in values.items() if n == name)
            family = CounterMetricFamily(f"{self.counters.prefix}_{name}", what.help)
            for reason, value in sorted(counts.items()):
                labels = {"reason": reason} if reason else {}
                family.add_sample(f"{self.counters.prefix}_{name}_total", labels, value)
            yield family


class GaugesCollector:
    """Unlabelled gauges read at each scrape."""

    def __init__(self, prefix: str, gauges: Mapping[str, Gauge]) -> None:
        self.prefix = prefix
        self.gauges = gauges

    def collect(self) -> Iterable[Metric]:
        for name, gauge in sorted(self.gauges.items()):
            yield GaugeMetricFamily(f"{self.prefix}_{name}", gauge.help, value=gauge.read())


class BuildInfo:
    def __init__(self, component: str) -> None:
        self.labels = {
            "version": iotpipe.__version__,
            "component": component,
            "python": platform.python_version(),
        }

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            "iotpipe_build_info", "iotpipe's version, always 1", labels=list(self.labels)
        )
        info.add_metric(list(self.labels.values()), 1)
        yield info


def registry(component: str, *collectors: Collector) -> CollectorRegistry:
    """A registry of its own per endpoint (not the global one): process, Python and build
    metrics, then the daemon's collectors."""
    reg = CollectorRegistry()
    every: tuple[Collector, ...] = (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR)
    for collector in (*every, BuildInfo(component), *collectors):
        reg.register(collector)
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
