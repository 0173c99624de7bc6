"""One reconcile: observe (kube) -> decide (lifecycle, pure) -> act (kube).

Reconciles of the same resource never overlap (a lock per resource); a burst of child events
collapses into one extra reconcile, which reads the latest state anyway.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from authz_operator import lifecycle, metrics, resources
from authz_operator.cache import ApiReads, Reads
from authz_operator.diff import Change
from authz_operator.kube import Kube
from authz_operator.pacing import StatusPace
from authz_operator.spec import SpecError, parse_spec
from authz_operator.workload import JobState, job_state

log = logging.getLogger("authz_operator.reconciler")

Obj = dict[str, Any]
MAX_AGAIN = 5   # reconciles in a row when a plan moved the state on (e.g. failure -> rollback)
Clock = Callable[[], datetime.datetime]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def observe(kube: Kube, body: Obj, now: datetime.datetime,
            reads: Reads | None = None) -> lifecycle.Observed:
    """Everything `lifecycle.decide` needs; the resource itself is `body`, the rest comes
    from `reads` (the watch cache in the operator, a request each without one)."""
    reads = reads or ApiReads(kube)
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    owner = resources.Owner(name=name, namespace=namespace, uid=meta["uid"])
    spec: Any
    try:
        spec = parse_spec(body.get("spec") or {})
    except SpecError as exc:
        spec = exc
    children = {kind: reads.child(kind, namespace, resources.child_name(name, kind),
                                  confirm_absent=False)
                for kind in resources.OWNED_KINDS}
    secrets: dict[str, lifecycle.SecretView | None] = {}
    if not isinstance(spec, SpecError):
        for secret in spec.secret_names():
            secrets[secret] = reads.secret(namespace, secret)
    status = body.get("status") or {}
    jobs, results = _observe_jobs(kube, reads, namespace, owner, status.get("migration") or {})
    dep = children.get("Deployment")
    pods: list[Obj] = []
    dep_status = (dep or {}).get("status") or {}
    rolling = dep is not None and bool(dep_status.get("unavailableReplicas") or int(
        dep_status.get("updatedReplicas", 0)) < int(dep_status.get("replicas", 0)))
    if rolling:
        pods = reads.pods(namespace, name)
    # Orphans of a replaced Deployment (lifecycle.selector), whoever orphaned them: listed
    # only where they can be (`orphans_wanted`).
    replica_sets = reads.replica_sets(namespace, name,
                                      lifecycle.orphans_wanted(dep, owner, status))
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


def confirm_creates(reads: Reads, observed: lifecycle.Observed,
                    plan: lifecycle.Plan) -> lifecycle.Observed:
    """Ask the API server (`confirm_absent`) about each child the plan would create: the
    watch cache holds only what a resource owns, and someone else's object of that name must
    not be taken over by a forced apply. Only creates pay the GET; a held Deployment, absent
    for a whole migration, costs nothing until the plan creates it."""
    found: dict[str, Obj] = {}
    for item in plan.applies:
        if item.change is Change.CREATE and item.kind in resources.OWNED_KINDS:
            live = reads.child(item.kind, observed.owner.namespace, item.name,
                               confirm_absent=True)
            if live is not None:
                found[item.kind] = live
    if not found:
        return observed
    return dataclasses.replace(observed, children={**observed.children, **found})


def _observe_jobs(kube: Kube, reads: Reads, namespace: str, owner: resources.Owner,
                  migration: dict[str, Any]) -> tuple[dict[str, Obj], dict[str, str]]:
    """The resource's migration Jobs, and the termination message of each finished Job whose
    outcome status does not record yet (none at all when idle)."""
    jobs = {j["metadata"]["name"]: j for j in reads.jobs(namespace, owner.name)
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
    """The migrate container's termination message from the Job's latest finished pod.

    A LIST, not the watch cache: it runs once per finished migration Job (until status
    records the outcome), not per reconcile, and the cache keeps no Job pods."""
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


def act(kube: Kube, body: Obj, observed: lifecycle.Observed, plan: lifecycle.Plan,
        reads: Reads | None = None) -> None:
    """Carry the plan out; tell `reads` what was written, so the next reconcile sees it even
    before the watch delivers it."""
    def wrote(obj: Obj | None) -> None:
        if reads is not None:
            reads.wrote(obj)

    def deleted(kind: str, child: str, uid: str | None, response: Obj | None) -> None:
        if reads is not None:
            reads.deleted(kind, namespace, child, uid, response)

    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    for item in plan.applies:
        if item.change is Change.DRIFT:
            # drop what others added to our lists, then own it again
            wrote(kube.overwrite(item.obj))
        wrote(kube.apply(item.obj))
        if item.handover_replicas:  # our later applies leave replicas out: keep it anyway
            wrote(kube.apply(resources.replicas_only(item.obj), resources.REPLICAS_MANAGER))
        log.info("%s/%s: %s %s %s", namespace, name, item.change.value, item.kind, item.name)
    for kind, child in plan.orphans:
        uid = _uid(observed.children.get(kind))
        deleted(kind, child, uid, kube.delete(kind, namespace, child, uid=uid, orphan=True))
        log.info("%s/%s: deleted %s %s, its dependents orphaned", namespace, name, kind, child)
    for kind, child in plan.deletes:
        uid = _uid(observed.children.get(kind)) if kind != "ReplicaSet" else _uid(next(
            (rs for rs in observed.replica_sets if rs["metadata"]["name"] == child), None))
        deleted(kind, child, uid, kube.delete(kind, namespace, child, uid=uid))
        log.info("%s/%s: deleted %s %s", namespace, name, kind, child)
    for event in plan.events:
        kube.post_event(body, event, observed.now)
        log.info("%s/%s: event %s: %s", namespace, name, event.reason, event.message)
    if plan.status_changed:  # last: whoever waits for the status also finds the events
        wrote(kube.patch_status(namespace, name, observed.status, plan.status))


def _uid(obj: Obj | None) -> str | None:
    return str(obj["metadata"]["uid"]) if obj and obj["metadata"].get("uid") else None


def reconcile(kube: Kube, namespace: str, name: str, clock: Clock = utcnow,
              handler: str = "reconcile", reads: Reads | None = None,
              pace: StatusPace | None = None) -> lifecycle.Plan | None:
    """Bring one AuthorizationService's children and status in line; None if it is gone.
    `handler` (the kopf handler that woke it) labels the metrics; `pace` may hold back a
    status that only counts a rollout's progress (pacing.py)."""
    started = time.perf_counter()
    reads = reads or ApiReads(kube)
    body = reads.resource(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        metrics.forget(namespace, name)
        return None  # owner references let the garbage collector remove the children
    try:
        observed = observe(kube, body, clock(), reads)
        plan = lifecycle.decide(observed)
        confirmed = confirm_creates(reads, observed, plan)
        if confirmed is not observed:   # a child the cache had not seen: decide on it
            observed, plan = confirmed, lifecycle.decide(confirmed)
        if plan.status_changed and pace is not None and pace.defer(
                namespace, name, observed.status, plan.status, plan.events):
            plan.status_changed = False   # a reconcile is scheduled that writes it
        act(kube, body, observed, plan, reads)
        if plan.status_changed and pace is not None:
            pace.wrote(namespace, name)
    except Exception:
        metrics.reconcile_failed(namespace, name, handler, time.perf_counter() - started)
        raise
    metrics.reconciled(namespace, name, handler, time.perf_counter() - started, plan.writes,
                       observed.status, plan.status, observed.jobs,
                       [e.reason for e in plan.events])
    return plan


class Reconciler:
    """Serialises reconciles per resource and coalesces bursts."""

    def __init__(self, kube: Kube, clock: Clock = utcnow, reads: Reads | None = None,
                 pace: StatusPace | None = None) -> None:
        self.kube = kube
        self.clock = clock
        self.reads = reads or ApiReads(kube)
        self.pace = pace
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
            plan = reconcile(self.kube, namespace, name, self.clock, handler, self.reads,
                             self.pace)
            for _ in range(MAX_AGAIN):
                if plan is None or not plan.again:
                    break
                plan = reconcile(self.kube, namespace, name, self.clock, handler, self.reads,
                                 self.pace)
            return plan

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._locks.pop((namespace, name), None)
        if self.pace is not None:
            self.pace.forget(namespace, name)
