"""One reconcile: observe (kube) -> decide (lifecycle, pure) -> act (kube).

Reconciles of the same resource never overlap (a lock per resource); a burst of child events
collapses into one extra reconcile, which reads the latest state anyway.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from authz_operator import lifecycle, metrics, resources
from authz_operator.diff import Change
from authz_operator.kube import Kube
from authz_operator.spec import SpecError, parse_spec
from authz_operator.workload import JobState, job_state

log = logging.getLogger("authz_operator.reconciler")

Obj = dict[str, Any]
MAX_AGAIN = 5   # reconciles in a row when a plan moved the state on (e.g. failure -> rollback)
Clock = Callable[[], datetime.datetime]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def observe(kube: Kube, body: Obj, now: datetime.datetime) -> lifecycle.Observed:
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    owner = resources.Owner(name=name, namespace=namespace, uid=meta["uid"])
    spec: Any
    try:
        spec = parse_spec(body.get("spec") or {})
    except SpecError as exc:
        spec = exc
    children = {kind: kube.get(kind, namespace, resources.child_name(name, kind))
                for kind in resources.OWNED_KINDS}
    secrets: dict[str, lifecycle.SecretView | None] = {}
    if not isinstance(spec, SpecError):
        for secret in spec.secret_names():
            secrets[secret] = kube.secret_view(namespace, secret)
    status = body.get("status") or {}
    jobs, results = _observe_jobs(kube, namespace, owner, status.get("migration") or {})
    dep = children.get("Deployment")
    pods: list[Obj] = []
    dep_status = (dep or {}).get("status") or {}
    rolling = dep is not None and bool(dep_status.get("unavailableReplicas") or int(
        dep_status.get("updatedReplicas", 0)) < int(dep_status.get("replicas", 0)))
    if rolling:
        pods = kube.list("Pod", namespace, _selector(resources.serving_selector(name)))
    # Every reconcile: orphans of a replaced Deployment (lifecycle.selector) are found
    # whenever they exist, whoever orphaned them (one list; the Deployment's own included).
    replica_sets = kube.list("ReplicaSet", namespace, _selector(resources.selector_labels(name)))
    return lifecycle.Observed(
        owner=owner,
        generation=int(meta.get("generation", 1)),
        spec=spec,
        status=body.get("status") or {},
        annotations=meta.get("annotations") or {},
        children=children,
        secrets=secrets,
        jobs=jobs,
        job_results=results,
        now=now,
        pods=pods,
        replica_sets=replica_sets,
    )


_selector = resources.selector_string


def _observe_jobs(kube: Kube, namespace: str, owner: resources.Owner,
                  migration: dict[str, Any]) -> tuple[dict[str, Obj], dict[str, str]]:
    """The resource's migration Jobs, and the termination message of each finished Job whose
    outcome status does not record yet (none at all when idle)."""
    selector = _selector({"app.kubernetes.io/instance": owner.name,
                          "app.kubernetes.io/managed-by": resources.MANAGED_BY})
    jobs = {j["metadata"]["name"]: j for j in kube.list("Job", namespace, selector)
            if lifecycle.controlled_by(j, owner)}
    results: dict[str, str] = {}
    newest = int(migration.get("revision") or 0)
    for name, job in jobs.items():
        if job_state(job) is JobState.RUNNING:
            continue
        revision = int((job["metadata"].get("labels") or {}).get(resources.LABEL_REVISION, 0))
        recorded = migration.get("job") == name and migration.get("phase") in (
            JobState.SUCCEEDED, JobState.FAILED)
        if recorded or revision < newest:
            continue
        message = termination_message(kube, namespace, name)
        if message is not None:
            results[name] = message
    return jobs, results


def termination_message(kube: Kube, namespace: str, job: str) -> str | None:
    """The migrate container's termination message from the Job's latest finished pod."""
    best: tuple[str, str] | None = None
    for pod in kube.list("Pod", namespace, f"batch.kubernetes.io/job-name={job}"):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") != resources.MIGRATE_CONTAINER:
                continue
            for state in (cs.get("state") or {}, cs.get("lastState") or {}):
                term = state.get("terminated")
                if term and term.get("message") is not None:
                    finished = str(term.get("finishedAt") or "")
                    if best is None or finished > best[0]:
                        best = (finished, str(term["message"]))
    return None if best is None else best[1]


def act(kube: Kube, body: Obj, observed: lifecycle.Observed, plan: lifecycle.Plan) -> None:
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    for item in plan.applies:
        if item.change is Change.DRIFT:
            kube.overwrite(item.obj)  # drop what others added to our lists, then own it again
        kube.apply(item.obj)
        if item.handover_replicas:  # our later applies leave replicas out: keep it anyway
            kube.apply(resources.replicas_only(item.obj), resources.REPLICAS_MANAGER)
        log.info("%s/%s: %s %s %s", namespace, name, item.change.value, item.kind, item.name)
    for kind, child in plan.orphans:
        live = observed.children.get(kind)
        kube.delete(kind, namespace, child, uid=live["metadata"]["uid"] if live else None,
                    orphan=True)
        log.info("%s/%s: deleted %s %s, its dependents orphaned", namespace, name, kind, child)
    for kind, child in plan.deletes:
        live = observed.children.get(kind)
        uid = live["metadata"]["uid"] if live else None
        kube.delete(kind, namespace, child, uid=uid)
        log.info("%s/%s: deleted %s %s", namespace, name, kind, child)
    for event in plan.events:
        kube.post_event(body, event, observed.now)
        log.info("%s/%s: event %s: %s", namespace, name, event.reason, event.message)
    if plan.status_changed:  # last: whoever waits for the status also finds the events
        kube.patch_status(namespace, name, observed.status, plan.status)


def reconcile(kube: Kube, namespace: str, name: str,
              clock: Clock = utcnow, handler: str = "reconcile") -> lifecycle.Plan | None:
    """Bring one AuthorizationService's children and status in line; None if it is gone.
    `handler` (the kopf handler that woke it) labels the metrics."""
    started = time.perf_counter()
    body = kube.get("AuthorizationService", namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        metrics.forget(namespace, name)
        return None  # owner references let the garbage collector remove the children
    try:
        observed = observe(kube, body, clock())
        plan = lifecycle.decide(observed)
        act(kube, body, observed, plan)
    except Exception:
        metrics.reconcile_failed(namespace, name, handler, time.perf_counter() - started)
        raise
    metrics.reconciled(namespace, name, handler, time.perf_counter() - started, plan.writes,
                       observed.status, plan.status, observed.jobs,
                       [e.reason for e in plan.events])
    return plan


class Reconciler:
    """Serialises reconciles per resource and coalesces bursts."""

    def __init__(self, kube: Kube, clock: Clock = utcnow) -> None:
        self.kube = kube
        self.clock = clock
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._waiting: set[tuple[str, str]] = set()

    def run(self, namespace: str, name: str, coalesce: bool = False,
            handler: str = "reconcile") -> lifecycle.Plan | None:
        key = (namespace, name)
        with self._guard:
            if coalesce and key in self._waiting:
                # a reconcile that has not started yet will see this change too
                metrics.coalesced(namespace, name, handler)
                return None
            self._waiting.add(key)
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._guard:
                self._waiting.discard(key)
            plan = reconcile(self.kube, namespace, name, self.clock, handler)
            for _ in range(MAX_AGAIN):
                if plan is None or not plan.again:
                    break
                plan = reconcile(self.kube, namespace, name, self.clock, handler)
            return plan

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._locks.pop((namespace, name), None)
