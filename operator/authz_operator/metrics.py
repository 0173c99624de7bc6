"""The operator's Prometheus metrics: one registry, every series, and what a reconcile reports.

The names and labels are a contract: the alerts and the dashboard in `manifests/monitoring/`
use them (docs/operations.md, "Metrics"). The reconciler and the handlers call the helpers at
the bottom; nothing else touches a metric. What a finished reconcile means for the metrics is
decided by pure functions (`finished_migration`, `finished_rollback`, `condition_values`) from
the status before and after, so each migration and rollback is counted once: on the
reconcile whose status write records it, which survives operator restarts (a restarted
operator sees the outcome already recorded and counts nothing). Jobs are also remembered by
uid, so the same finished Job is never counted twice by one process.
"""

from __future__ import annotations

import contextlib
import datetime
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
)
from prometheus_client.exposition import generate_latest, start_http_server

from authz_operator import resources as r
from authz_operator import series
from authz_operator.status import Direction, Reason
from authz_operator.workload import JobState, job_endings

REGISTRY = CollectorRegistry()
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

RESOURCE = ("namespace", "name")
RECONCILES = series.Counter(
    "authz_operator_reconciles_total",
    "Finished reconciles of AuthorizationServices, by the kopf handler that woke them.",
    [*RESOURCE, "handler", "result"], registry=REGISTRY)
COALESCED = series.Counter(
    "authz_operator_coalesced_total",
    "Events folded into a reconcile of the same resource that had not started yet (it reads "
    "the latest state, so it covers them), by the kopf handler that received them.",
    [*RESOURCE, "handler"], registry=REGISTRY)
NOT_NEWS = series.Counter(
    "authz_operator_events_not_news_total",
    "Child events that woke no reconcile: the child, as a reconcile reads it, was what the "
    "operator last knew of it (news.py), by the kopf handler that received them.",
    ["handler"], registry=REGISTRY)
WRITES = series.Counter(
    "authz_operator_writes_total", "Writes a reconcile sent (applies, deletes, status, events).",
    list(RESOURCE), registry=REGISTRY)
HANDLER_ERRORS = series.Counter(
    "authz_operator_handler_errors_total",
    "Failures inside a kopf handler (retried by kopf or by the handler), by handler id.",
    ["handler"], registry=REGISTRY)
RECONCILE_DURATION = series.Histogram(
    "authz_operator_reconcile_duration_seconds", "Time one reconcile took.",
    RESOURCE, REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
MIGRATIONS = series.Counter(
    "authz_operator_migrations_total", "Migration Jobs finished, by direction and outcome.",
    [*RESOURCE, "direction", "outcome"], registry=REGISTRY)
MIGRATION_DURATION = series.Histogram(
    "authz_operator_migration_duration_seconds",
    "How long a migration Job ran (its start to its completion or failure).",
    [*RESOURCE, "direction", "outcome"], REGISTRY,
    buckets=(1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0))
ROLLBACKS = series.Counter(
    "authz_operator_rollbacks_total",
    "Rollbacks finished: succeeded (serving the earlier revision) or failed (its "
    "down-migration failed).",
    [*RESOURCE, "outcome"], registry=REGISTRY)
CONDITION = series.Gauge(
    "authz_operator_condition",
    "1 for each condition's current status, 0 for its other statuses.",
    [*RESOURCE, "type", "status"], registry=REGISTRY)

PER_RESOURCE = (RECONCILES, COALESCED, WRITES, RECONCILE_DURATION, MIGRATIONS,
                MIGRATION_DURATION, ROLLBACKS, CONDITION)
STATUSES = ("True", "False", "Unknown")
SUCCEEDED, FAILED = "succeeded", "failed"


# ---------------------------------------------------------------------------------------------
# pure: what a reconcile's status change means


@dataclass(frozen=True)
class MigrationFinished:
    job: str
    uid: str
    direction: str               # up | down
    outcome: str                 # succeeded | failed
    seconds: float | None        # None: the Job's times are not known


def _time(value: Any) -> datetime.datetime | None:
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def job_seconds(job: Mapping[str, Any]) -> float | None:
    """From the Job's start to its completion (success) or the condition that ended it
    (a failed Job has no completionTime)."""
    st = job.get("status") or {}
    start = _time(st.get("startTime"))
    end = _time(st.get("completionTime"))
    if end is None:
        ends = [_time(c.get("lastTransitionTime")) for c in job_endings(job)]
        end = min((e for e in ends if e is not None), default=None)
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def finished_migration(old: Mapping[str, Any], new: Mapping[str, Any],
                       jobs: Mapping[str, Mapping[str, Any]]) -> MigrationFinished | None:
    """The migration Job whose outcome the new status records for the first time."""
    before, after = old.get("migration") or {}, new.get("migration") or {}
    phase = after.get("phase")
    if phase not in (JobState.SUCCEEDED, JobState.FAILED):
        return None
    if before.get("job") == after.get("job") and before.get("phase") == phase:
        return None   # recorded by an earlier reconcile
    name = str(after.get("job"))
    job = jobs.get(name) or {}
    labels = (job.get("metadata") or {}).get("labels") or {}
    direction = str(after.get("direction") or labels.get(r.LABEL_MIGRATION) or Direction.UP)
    return MigrationFinished(
        job=name, uid=str((job.get("metadata") or {}).get("uid") or name),
        direction=direction, outcome=SUCCEEDED if phase == JobState.SUCCEEDED else FAILED,
        seconds=job_seconds(job) if job else None)


def finished_rollback(events: Sequence[str], migration: MigrationFinished | None) -> str | None:
    """`succeeded` when the reconcile reports RolledBack (posted once, on the transition),
    `failed` when a rollback's down-migration failed; else None."""
    if (migration is not None and migration.direction == Direction.DOWN
            and migration.outcome == FAILED):
        return FAILED
    if Reason.ROLLED_BACK in events:
        return SUCCEEDED
    return None


def condition_values(conditions: Sequence[Mapping[str, Any]] | None
                     ) -> dict[tuple[str, str], float]:
    """(type, status) -> 1 for the current status of each condition, 0 for the others."""
    out: dict[tuple[str, str], float] = {}
    for c in conditions or ():
        current = str(c.get("status") or "Unknown")
        for s in STATUSES:
            out[(str(c.get("type")), s)] = 1.0 if s == current else 0.0
    return out


# ---------------------------------------------------------------------------------------------
# what the reconciler and the handlers call


class _Seen:
    """Job uids already counted by this process (bounded: oldest forgotten first)."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._uids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, uid: str) -> bool:
        with self._lock:
            if uid in self._uids:
                return False
            self._uids[uid] = None
            while len(self._uids) > self.size:
                self._uids.popitem(last=False)
            return True


_seen = _Seen()


def reconciled(namespace: str, name: str, handler: str, seconds: float, writes: int,
               old_status: Mapping[str, Any], new_status: Mapping[str, Any],
               jobs: Mapping[str, Mapping[str, Any]], events: Sequence[str]) -> None:
    """A reconcile finished and its writes were sent."""
    RECONCILES.inc((namespace, name, handler, "ok"))
    RECONCILE_DURATION.observe((namespace, name), seconds)
    WRITES.inc((namespace, name), writes)
    for (type_, status), value in condition_values(new_status.get("conditions")).items():
        CONDITION.set((namespace, name, type_, status), value)
    migration = finished_migration(old_status, new_status, jobs)
    if migration is not None and _seen.first_time(migration.uid):
        labels = (namespace, name, migration.direction, migration.outcome)
        MIGRATIONS.inc(labels)
        if migration.seconds is not None:
            MIGRATION_DURATION.observe(labels, migration.seconds)
    rollback = finished_rollback(events, migration)
    if rollback is not None:
        ROLLBACKS.inc((namespace, name, rollback))


def reconcile_failed(namespace: str, name: str, handler: str, seconds: float) -> None:
    RECONCILES.inc((namespace, name, handler, "error"))
    RECONCILE_DURATION.observe((namespace, name), seconds)


def coalesced(namespace: str, name: str, handler: str) -> None:
    COALESCED.inc((namespace, name, handler))


def not_news(handler: str) -> None:
    NOT_NEWS.inc((handler,))


def forget(namespace: str, name: str) -> None:
    """The resource is gone: drop its series (bounded cardinality as resources come and go)."""
    for metric in PER_RESOURCE:
        metric.remove_by_labels({"namespace": namespace, "name": name})


@contextlib.contextmanager
def counting_errors(handler: str) -> Iterator[None]:
    """Count an exception leaving the block against `handler`, and let it go on."""
    try:
        yield
    except Exception:
        HANDLER_ERRORS.inc((handler,))
        raise


def generate() -> bytes:
    """The exposition text, as the endpoint serves it."""
    return generate_latest(REGISTRY)


def value(name: str, labels: Mapping[str, str]) -> float:
    """The sum of the samples called `name` whose labels include `labels` (for tests and
    for reading back)."""
    total = 0.0
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


class Server:
    """The metrics HTTP endpoint (`/metrics` and any path), stopped on the operator's clean-up
    so an operator started again in the same process can bind the port again."""

    def __init__(self, port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 (scraped)
        self.httpd, self.thread = start_http_server(port, addr=addr, registry=REGISTRY)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
