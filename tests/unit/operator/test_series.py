"""The compact metric families expose exactly what prometheus_client's own classes would for
the same calls (the metric contract), created timestamps aside."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import prometheus_client as prom
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from authz_operator import series

BUCKETS = (0.005, 0.1, 1.0, 30.0)
LABELS = ("namespace", "name")


def exposition(registry: CollectorRegistry) -> str:
    """The text a scrape gets, each `_created` value replaced (they are wall-clock times)."""
    text = generate_latest(registry).decode()
    return re.sub(r"^(\w+_created\{[^}]*\}) \S+$", r"\1 T", text, flags=re.M)


def fill(families: Sequence[Any], ours: bool) -> None:
    """The same calls on either kind of family (a counter, a gauge, a histogram)."""
    counter, gauge, histogram = families
    calls = [(("a", "x"), 1.0), (("a", "y"), 2.5), (("b", "x"), 0.0)]
    for labels, amount in calls:
        if ours:
            counter.inc(labels, amount)
            gauge.set(labels, amount)
        else:
            counter.labels(*labels).inc(amount)
            gauge.labels(*labels).set(amount)
    for labels, value in [(("a", "x"), 0.005), (("a", "x"), 0.2), (("a", "x"), 99.0),
                          (("b", "y"), 1.0), (("b", "y"), 0.0)]:
        if ours:
            histogram.observe(labels, value)
        else:
            histogram.labels(*labels).observe(value)


def test_the_exposition_is_prometheus_clients() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    fill([prom.Counter("t_things_total", "Things.", LABELS, registry=theirs),
          prom.Gauge("t_level", "Level.", LABELS, registry=theirs),
          prom.Histogram("t_seconds", "Time.", LABELS, registry=theirs, buckets=BUCKETS)],
         ours=False)
    fill([series.Counter("t_things_total", "Things.", LABELS, ours),
          series.Gauge("t_level", "Level.", LABELS, ours),
          series.Histogram("t_seconds", "Time.", LABELS, ours, buckets=BUCKETS)],
         ours=True)
    assert exposition(ours) == exposition(theirs)
    assert ours.get_sample_value("t_seconds_bucket",
                                 {"namespace": "a", "name": "x", "le": "0.1"}) == 1.0
    assert ours.get_sample_value("t_seconds_count", {"namespace": "a", "name": "x"}) == 3.0


def test_removing_by_labels_drops_every_matching_series_and_only_those() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    families = [
        (prom.Counter("t_things_total", "Things.", LABELS, registry=theirs),
         series.Counter("t_things_total", "Things.", LABELS, ours)),
        (prom.Gauge("t_level", "Level.", LABELS, registry=theirs),
         series.Gauge("t_level", "Level.", LABELS, ours)),
        (prom.Histogram("t_seconds", "Time.", LABELS, registry=theirs, buckets=BUCKETS),
         series.Histogram("t_seconds", "Time.", LABELS, ours, buckets=BUCKETS)),
    ]
    fill([t for t, _ in families], ours=False)
    fill([o for _, o in families], ours=True)
    for theirs_family, ours_family in families:
        theirs_family.remove_by_labels({"namespace": "a"})
        ours_family.remove_by_labels({"namespace": "a"})
    assert exposition(ours) == exposition(theirs)
    assert 'namespace="a"' not in exposition(ours)
    assert 'namespace="b"' in exposition(ours)


def test_wrong_label_counts_and_negative_increments_are_refused() -> None:
    registry = CollectorRegistry()
    counter = series.Counter("t_things_total", "Things.", LABELS, registry)
    with pytest.raises(ValueError, match="1 label values for 2 labels"):
        counter.inc(("a",))
    with pytest.raises(ValueError, match="only go up"):
        counter.inc(("a", "x"), -1)
