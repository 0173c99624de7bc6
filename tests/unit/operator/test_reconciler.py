"""observe -> decide -> act against an in-memory API (order of writes, no writes when idle)."""

from __future__ import annotations

import copy
import datetime
from typing import Any

from authz_operator import lifecycle, metrics, reconciler
from authz_operator.kube import Kube
from authz_operator.lifecycle import SecretView
from authz_operator.status import Event

from .samples import spec_body

NOW = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)


class FakeKube:
    def __init__(self, objects: dict[tuple[str, str], Any]) -> None:
        self.objects = objects
        self.writes: list[str] = []

    def get(self, kind: str, namespace: str, name: str) -> Any:
        return copy.deepcopy(self.objects.get((kind, name)))

    def list(self, kind: str, namespace: str, label_selector: str) -> list[Any]:
        return [copy.deepcopy(o) for (k, _), o in self.objects.items() if k == kind]

    def secret_view(self, namespace: str, name: str) -> SecretView | None:
        return SecretView("1", frozenset({"database-url", "jwt-secret"}))

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(f"apply {obj['kind']}")
        live = copy.deepcopy(obj)
        live["metadata"]["uid"] = "u-" + obj["kind"]
        self.objects[(obj["kind"], obj["metadata"]["name"])] = live
        return live

    def overwrite(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.writes.append(f"overwrite {obj['kind']}")
        return obj

    def delete(self, kind: str, namespace: str, name: str, uid: str | None = None) -> None:
        self.writes.append(f"delete {kind}")
        self.objects.pop((kind, name), None)

    def patch_status(self, namespace: str, name: str, old: Any, new: Any) -> Any:
        self.writes.append("status")
        self.objects[("AuthorizationService", name)]["status"] = copy.deepcopy(new)
        return None

    def post_event(self, owner: Any, event: Event, now: Any) -> None:
        self.writes.append(f"event {event.reason}")


def resource_body(name: str, namespace: str = "ns", migrations: bool = False) -> dict[str, Any]:
    """An AuthorizationService as the API server returns it."""
    return {"apiVersion": "rwadurian.io/v1alpha1", "kind": "AuthorizationService",
            "metadata": {"name": name, "namespace": namespace, "uid": "u", "generation": 1},
            "spec": spec_body() if migrations else spec_body(migrations={"enabled": False})}


def test_writes_children_then_events_then_status_and_nothing_when_idle() -> None:
    body = resource_body("a")
    fake = FakeKube({("AuthorizationService", "a"): body})
    kube: Kube = fake  # type: ignore[assignment]
    plan = reconciler.reconcile(kube, "ns", "a", clock=lambda: NOW)
    assert plan is not None
    assert fake.writes[-1] == "status"
    assert fake.writes.index("event Created") > fake.writes.index("apply Ingress")
    # The next one sees the Deployment (no controller yet): only the status moves on ...
    fake.writes.clear()
    reconciler.reconcile(kube, "ns", "a", clock=lambda: NOW)
    assert fake.writes == ["status"]
    # ... and then nothing changes, so nothing is written.
    fake.writes.clear()
    reconciler.reconcile(kube, "ns", "a", clock=lambda: NOW)
    assert fake.writes == []


def test_a_deleted_resource_is_left_to_the_garbage_collector() -> None:
    fake = FakeKube({})
    kube: Kube = fake  # type: ignore[assignment]
    assert reconciler.reconcile(kube, "ns", "gone") is None
    assert fake.writes == []


def test_a_reconcile_reports_its_metrics_and_a_gone_resource_drops_them() -> None:
    body = resource_body("m", "metrics-ns")
    fake = FakeKube({("AuthorizationService", "m"): body})
    kube: Kube = fake  # type: ignore[assignment]
    resource = {"namespace": "metrics-ns", "name": "m"}
    reconciler.reconcile(kube, "metrics-ns", "m", clock=lambda: NOW, handler="child-pods")
    assert metrics.value("authz_operator_reconciles_total",
                         {**resource, "handler": "child-pods", "result": "ok"}) == 1
    assert metrics.value("authz_operator_writes_total", resource) == len(fake.writes)
    assert metrics.value("authz_operator_condition",
                         {**resource, "type": "Ready", "status": "False"}) == 1
    assert metrics.value("authz_operator_condition",
                         {**resource, "type": "Migrated", "status": "True"}) == 1

    del fake.objects[("AuthorizationService", "m")]
    assert reconciler.reconcile(kube, "metrics-ns", "m", clock=lambda: NOW) is None
    assert 'namespace="metrics-ns"' not in metrics.generate().decode()


def test_only_the_children_a_plan_creates_are_confirmed_by_a_get() -> None:
    """With the watch cache, a child the cache lacks is asked about (a GET) only when the plan
    would create it; someone else's object found that way is decided on, not overwritten
    blindly as new."""
    from authz_operator.cache import WatchCache
    from authz_operator.diff import Change

    body = resource_body("a", migrations=True)   # migrations on: the Deployment waits for the Job
    foreign = {"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "a-config", "namespace": "ns", "uid": "f",
                            "resourceVersion": "7"}, "data": {"someone": "else"}}
    kube = FakeKube({("AuthorizationService", "a"): body, ("ConfigMap", "a-config"): foreign})
    asked: list[str] = []
    get = kube.get

    def counting_get(kind: str, namespace: str, name: str) -> Any:
        asked.append(kind)
        return get(kind, namespace, name)
    kube.get = counting_get  # type: ignore[method-assign]
    reads = WatchCache(Kube.__new__(Kube), {})
    reads.kube = kube  # type: ignore[assignment]

    observed = reconciler.observe(kube, body, NOW, reads)  # type: ignore[arg-type]
    plan = lifecycle.decide(observed)
    creates = {a.kind for a in plan.applies if a.change is Change.CREATE}
    assert "ConfigMap" in creates
    assert "Deployment" not in creates
    asked.clear()
    confirmed = reconciler.confirm_creates(reads, observed, plan)
    assert sorted(asked) == sorted(creates - {"Job"})   # Jobs: by revision, not by name
    assert (confirmed.children["ConfigMap"] or {})["metadata"]["uid"] == "f"
    again = lifecycle.decide(confirmed)
    assert all(a.change is not Change.CREATE for a in again.applies if a.kind == "ConfigMap")


def test_a_rollouts_progress_waits_for_its_pace_and_is_written_when_it_is_over() -> None:
    from authz_operator.pacing import StatusPace

    body = resource_body("p")
    fake = FakeKube({("AuthorizationService", "p"): body})
    kube: Kube = fake  # type: ignore[assignment]
    seconds = [100.0]
    pace = StatusPace(interval=2.0, clock=lambda: seconds[0])
    scheduled: list[float] = []

    def later(namespace: str, name: str, delay: float) -> bool:
        scheduled.append(delay)
        return True
    pace.later = later
    reconciler.reconcile(kube, "ns", "p", clock=lambda: NOW, pace=pace)

    def rollout(ready: int) -> None:
        fake.objects[("Deployment", "p")]["status"] = {
            "observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
            "readyReplicas": ready, "availableReplicas": ready,
            "unavailableReplicas": 2 - ready}

    rollout(0)
    fake.writes.clear()
    reconciler.reconcile(kube, "ns", "p", clock=lambda: NOW, pace=pace)
    assert fake.writes == []                    # the Deployment's progress, at once after
    assert scheduled == [2.0]                   # the write before: it waits
    seconds[0] += 2.0
    reconciler.reconcile(kube, "ns", "p", clock=lambda: NOW, pace=pace)
    assert fake.writes == ["status"]
    scheduled.clear()
    rollout(1)
    seconds[0] += 0.5
    fake.writes.clear()
    reconciler.reconcile(kube, "ns", "p", clock=lambda: NOW, pace=pace)
    assert fake.writes == []                    # only progress, 0.5 s after the last write
    assert scheduled == [1.5]
    seconds[0] += 1.5                           # the scheduled reconcile writes it
    reconciler.reconcile(kube, "ns", "p", clock=lambda: NOW, pace=pace)
    assert fake.writes == ["status"]
    assert fake.objects[("AuthorizationService", "p")]["status"]["ready"] == "1/2"
    rollout(2)                                  # complete: a transition, at once
    fake.writes.clear()
    reconciler.reconcile(kube, "ns", "p", clock=lambda: NOW, pace=pace)
    assert fake.writes[-1] == "status"
    assert fake.objects[("AuthorizationService", "p")]["status"]["phase"] == "Ready"
