"""One reconcile: observe (kube) -> decide (lifecycle, pure) -> act (kube).

Reconciles of the same resource never overlap (a lock per resource); a burst of child events
collapses into one extra reconcile, which reads the latest state anyway.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter

from authz_operator import lifecycle, resources
from authz_operator.diff import Change
from authz_operator.kube import Kube
from authz_operator.spec import SpecError, parse_spec

log = logging.getLogger("authz_operator.reconciler")

RECONCILES = Counter(
    "authz_operator_reconciles_total", "Finished reconciles of AuthorizationServices.",
    ["namespace", "name", "result"])
WRITES = Counter(
    "authz_operator_writes_total", "Writes a reconcile sent (applies, deletes, status, events).",
    ["namespace", "name"])

Obj = dict[str, Any]
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
    return lifecycle.Observed(
        owner=owner,
        generation=int(meta.get("generation", 1)),
        spec=spec,
        status=body.get("status") or {},
        annotations=meta.get("annotations") or {},
        children=children,
        secrets=secrets,
        jobs={},
        job_results={},
        now=now,
    )


def act(kube: Kube, body: Obj, observed: lifecycle.Observed, plan: lifecycle.Plan) -> None:
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    for item in plan.applies:
        if item.change is Change.DRIFT:
            kube.overwrite(item.obj)  # drop what others added to our lists, then own it again
        kube.apply(item.obj)
        log.info("%s/%s: %s %s %s", namespace, name, item.change.value, item.kind, item.name)
    for kind, child in plan.deletes:
        live = observed.children.get(kind)
        uid = live["metadata"]["uid"] if live else None
        kube.delete(kind, namespace, child, uid=uid)
        log.info("%s/%s: deleted %s %s", namespace, name, kind, child)
    if plan.status_changed:
        kube.patch_status(namespace, name, observed.status, plan.status)
    for event in plan.events:
        kube.post_event(body, event, observed.now)
        log.info("%s/%s: event %s: %s", namespace, name, event.reason, event.message)


def reconcile(kube: Kube, namespace: str, name: str,
              clock: Clock = utcnow) -> lifecycle.Plan | None:
    """Bring one AuthorizationService's children and status in line; None if it is gone."""
    body = kube.get("AuthorizationService", namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None  # owner references let the garbage collector remove the children
    try:
        observed = observe(kube, body, clock())
        plan = lifecycle.decide(observed)
        act(kube, body, observed, plan)
    except Exception:
        RECONCILES.labels(namespace, name, "error").inc()
        raise
    WRITES.labels(namespace, name).inc(plan.writes)
    RECONCILES.labels(namespace, name, "ok").inc()
    return plan


class Reconciler:
    """Serialises reconciles per resource and coalesces bursts."""

    def __init__(self, kube: Kube, clock: Clock = utcnow) -> None:
        self.kube = kube
        self.clock = clock
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._waiting: set[tuple[str, str]] = set()

    def run(self, namespace: str, name: str, coalesce: bool = False) -> lifecycle.Plan | None:
        key = (namespace, name)
        with self._guard:
            if coalesce and key in self._waiting:
                return None  # a reconcile that has not started yet will see this change too
            self._waiting.add(key)
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._guard:
                self._waiting.discard(key)
            return reconcile(self.kube, namespace, name, self.clock)

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._locks.pop((namespace, name), None)
