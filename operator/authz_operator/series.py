"""Metric families that keep their series as plain numbers: one dict and one lock per family.

prometheus_client's Counter, Gauge and Histogram keep an object per series, and per value a
lock and an object of its own (a histogram series: 14 of them). With a series per resource
that was 24 MiB and 400,000 allocations at 1,000 resources (issue 11). These families keep
a float per counter or gauge series and one list per histogram series, and are registered
as custom collectors (prometheus_client's documented way), so the exposition is the same:
the names, HELP and TYPE lines, labels, buckets and each series' `_created` sample.

They are written from kopf's event loop and its executor's threads and read by the scrape
thread: one lock per family guards its dict.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

Labels = tuple[str, ...]


class _Family(Collector):
    kind = ""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: CollectorRegistry) -> None:
        self.name, self.documentation = name, documentation
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()
        self._values: dict[Labels, Any] = {}   # a float, or a histogram's list
        self._created: dict[Labels, float] = {}
        registry.register(self)

    def _labels(self, values: Labels) -> Labels:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: {len(values)} label values for "
                             f"{len(self.labelnames)} labels {self.labelnames}")
        return tuple(str(v) for v in values)

    def remove_by_labels(self, match: Mapping[str, str]) -> None:
        """Drop every series whose labels include `match`."""
        at = [(self.labelnames.index(k), v) for k, v in match.items()]
        with self._lock:
            for key in [k for k in self._values if all(k[i] == v for i, v in at)]:
                del self._values[key]
                self._created.pop(key, None)

    def _created_at(self, key: Labels) -> None:
        if key not in self._created:
            self._created[key] = time.time()


class Counter(_Family):
    kind = "counter"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: CollectorRegistry) -> None:
        super().__init__(name.removesuffix("_total"), documentation, labelnames, registry)

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: counters only go up ({amount})")
        key = self._labels(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount
            self._created_at(key)

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            for key, value in self._values.items():
                family.add_metric(key, value, created=self._created[key])
        yield family


class Gauge(_Family):
    kind = "gauge"

    def set(self, labels: Labels, value: float) -> None:
        key = self._labels(labels)
        with self._lock:
            self._values[key] = float(value)

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            for key, value in self._values.items():
                family.add_metric(key, value)
        yield family


class Histogram(_Family):
    """Each series: [count in each bucket (not cumulative; +Inf last)..., sum]."""

    kind = "histogram"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 registry: CollectorRegistry, buckets: Sequence[float]) -> None:
        super().__init__(name, documentation, labelnames, registry)
        self.bounds = [float(b) for b in buckets if float(b) != float("inf")]
        # the `le` label as prometheus_client writes it (its helper is untyped)
        self._le = [str(floatToGoString(b))  # type: ignore[no-untyped-call]
                    for b in [*self.bounds, float("inf")]]

    def observe(self, labels: Labels, value: float) -> None:
        key = self._labels(labels)
        with self._lock:
            series = self._values.get(key)
            if series is None:
                series = self._values[key] = [0.0] * (len(self._le) + 1)
                self._created_at(key)
            series[bisect.bisect_left(self.bounds, value)] += 1   # le: value <= bound
            series[-1] += value

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            for key, series in self._values.items():
                cumulative, total = [], 0.0
                for le, count in zip(self._le, series, strict=False):
                    total += count
                    cumulative.append((le, total))
                family.add_metric(key, cumulative, series[-1])
                family.samples.append(Sample(f"{self.name}_created",
                                             dict(zip(self.labelnames, key, strict=True)),
                                             self._created[key]))
        yield family
