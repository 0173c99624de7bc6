"""Prometheus metrics on a per-application registry (default process metrics included).

With several worker processes (PROMETHEUS_MULTIPROC_DIR set by workers.py) the counters
and histograms live in that shared folder and a scrape of any worker renders their sum;
the process, platform and GC metrics are the answering worker's own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    generate_latest,
    multiprocess,
    platform_collector,
    process_collector,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    authorizations: Counter
    checks: Counter
    outbox_published: Counter
    outbox_failures: Counter
    outbox_pending: Gauge
    consumed: Counter
    system: CollectorRegistry | None = None  # this process's own, in multiprocess mode
    _children: dict[tuple[object, ...], Any] = field(default_factory=dict)

    def render(self) -> bytes:
        if self.system is None:
            return generate_latest(self.registry)
        shared = CollectorRegistry()
        multiprocess.MultiProcessCollector(shared)  # type: ignore[no-untyped-call]
        return generate_latest(shared) + generate_latest(self.system)

    def check(self, allowed: bool, source: str) -> None:
        self._child(self.checks, "true" if allowed else "false", source).inc()

    def request(self, method: str, route: str, status: str, seconds: float) -> None:
        self._child(self.requests, method, route, status).inc()
        self._child(self.latency, method, route, status).observe(seconds)

    def _child(self, metric: Any, *labels: str) -> Any:
        """metric.labels(*labels), looked up once per label values."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


def create_metrics() -> Metrics:
    registry = CollectorRegistry()
    shared = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    system = CollectorRegistry() if shared else registry
    process_collector.ProcessCollector(registry=system)
    platform_collector.PlatformCollector(registry=system)
    gc_collector.GCCollector(registry=system)
    return Metrics(
        system=system if shared else None,
        registry=registry,
        requests=Counter("http_requests_total", "HTTP requests by route and status",
                         ["method", "route", "status"], registry=registry),
        latency=Histogram("http_request_duration_seconds", "HTTP request latency",
                          ["method", "route", "status"], registry=registry),
        authorizations=Counter("authz_authorization_changes_total",
                               "Authorization state changes by event and role",
                               ["event", "role_type"], registry=registry),
        checks=Counter("authz_checks_total", "Decision checks by result and source",
                       ["allowed", "source"], registry=registry),
        outbox_published=Counter("authz_outbox_published_total",
                                 "Outbox events published to Kafka", registry=registry),
        outbox_failures=Counter("authz_outbox_publish_failures_total",
                                "Outbox events that failed to publish (retried)",
                                registry=registry),
        outbox_pending=Gauge("authz_outbox_pending", "Outbox events waiting to be published",
                             registry=registry, multiprocess_mode="livemax"),
        consumed=Counter("authz_identity_events_total", "identity-events consumed by outcome",
                         ["type", "outcome"], registry=registry),
    )
