"""Prometheus metrics on a per-application registry (default process metrics included)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    generate_latest,
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

    def render(self) -> bytes:
        return generate_latest(self.registry)


def create_metrics() -> Metrics:
    registry = CollectorRegistry()
    process_collector.ProcessCollector(registry=registry)
    platform_collector.PlatformCollector(registry=registry)
    gc_collector.GCCollector(registry=registry)
    return Metrics(
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
                             registry=registry),
        consumed=Counter("authz_identity_events_total", "identity-events consumed by outcome",
                         ["type", "outcome"], registry=registry),
    )
