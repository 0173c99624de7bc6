"""news.py: which child events wake a reconcile, from plain API-server-shaped objects."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from authz_operator.news import LastKnown

Obj = dict[str, Any]


def obj(kind: str, rv: int, **rest: Any) -> Obj:
    return {"apiVersion": "v1", "kind": kind,
            "metadata": {"name": "svc", "namespace": "ns", "uid": f"uid-{kind}",
                         "resourceVersion": str(rv), "generation": 1,
                         "labels": {"app.kubernetes.io/managed-by": "authz-operator"}},
            **rest}


def news(verdict: bool | Callable[[], bool]) -> bool:
    """What a wake makes of `delivered`'s answer (a check is asked when it would fire)."""
    return verdict if isinstance(verdict, bool) else not verdict()


def pdb(rv: int, healthy: int = 0, min_available: int = 1) -> Obj:
    return obj("PodDisruptionBudget", rv, spec={"minAvailable": min_available},
               status={"currentHealthy": healthy, "observedGeneration": 1})


def deployment(rv: int, ready: int | None = None) -> Obj:
    status = {} if ready is None else {"observedGeneration": 1, "replicas": 2,
                                       "readyReplicas": ready}
    return obj("Deployment", rv, spec={"replicas": 2}, status=status)


def job(rv: int, **status: Any) -> Obj:
    return obj("Job", rv, spec={"template": {"spec": {"containers": []}}}, status=status)


def test_the_echo_of_a_created_child_is_not_news() -> None:
    known = LastKnown()
    for written in (obj("ConfigMap", 10, data={"a": "1"}), deployment(11), job(12)):
        known.wrote(copy.deepcopy(written))
        assert not known.delivered("ADDED", written["kind"], written)


def test_a_status_no_reconcile_reads_is_not_news_and_the_rest_is() -> None:
    known = LastKnown()
    assert news(known.delivered("ADDED", "PodDisruptionBudget", pdb(10)))
    assert not known.delivered("MODIFIED", "PodDisruptionBudget", pdb(11, healthy=2))
    assert known.delivered("MODIFIED", "PodDisruptionBudget", pdb(12, healthy=2,
                                                                  min_available=2))
    note = pdb(13, healthy=2, min_available=2)
    note["metadata"]["annotations"] = {"example.com/note": "hello"}   # someone's edit
    assert known.delivered("MODIFIED", "PodDisruptionBudget", note)


def test_what_the_lifecycle_reads_of_a_deployment_or_job_status_is_news() -> None:
    known = LastKnown()
    assert news(known.delivered("ADDED", "Deployment", deployment(10)))
    assert known.delivered("MODIFIED", "Deployment", deployment(11, ready=0))
    assert known.delivered("MODIFIED", "Deployment", deployment(12, ready=1))
    assert news(known.delivered("ADDED", "Job", job(20)))
    # the Job started, its pod became ready: nothing the lifecycle decides on
    assert not known.delivered("MODIFIED", "Job", job(21, startTime="2026-12-05T00:00:00Z"))
    assert not known.delivered("MODIFIED", "Job", job(22, startTime="2026-12-05T00:00:00Z",
                                                      active=1, ready=1))
    met = {"type": "SuccessCriteriaMet", "status": "True"}
    assert known.delivered("MODIFIED", "Job", job(
        23, startTime="2026-12-05T00:00:00Z", conditions=[met]))
    # the pods are gone: Complete follows, the Job had already ended
    assert not known.delivered("MODIFIED", "Job", job(
        24, startTime="2026-12-05T00:00:00Z", completionTime="2026-12-05T00:00:09Z",
        conditions=[met, {"type": "Complete", "status": "True"}]))
    assert known.delivered("MODIFIED", "Job", job(
        25, conditions=[{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]))


def test_a_written_child_with_a_status_the_lifecycle_reads_stays_news() -> None:
    """An update's answer can carry a Deployment status newer than the one the reconcile
    read: its echo must wake the next reconcile."""
    known = LastKnown()
    known.delivered("ADDED", "Deployment", deployment(10, ready=0))
    updated = deployment(11, ready=1)
    known.wrote(updated)
    assert known.delivered("MODIFIED", "Deployment", updated)


def test_listings_and_deletions_are_always_news_and_a_deletion_forgets() -> None:
    known = LastKnown()
    cm = obj("ConfigMap", 10, data={"a": "1"})
    known.wrote(cm)
    listed = {k: v for k, v in cm.items() if k not in ("kind", "apiVersion")}
    assert known.delivered(None, "ConfigMap", listed)
    assert not known.delivered("MODIFIED", "ConfigMap", cm)   # a listed body lacks its kind
    assert known.delivered("DELETED", "ConfigMap", cm)
    assert len(known) == 0
    assert news(known.delivered("ADDED", "ConfigMap", obj("ConfigMap", 14, data={"a": "1"})))


def test_a_write_recorded_after_a_later_delivery_does_not_replace_it() -> None:
    known = LastKnown()
    mine = obj("Service", 10, spec={"ports": [{"port": 3002}]})
    theirs = obj("Service", 11, spec={"ports": [{"port": 1234}]})
    assert known.delivered("MODIFIED", "Service", theirs)
    known.wrote(mine)   # a reconcile thread, later than the watch
    assert not known.delivered("MODIFIED", "Service", copy.deepcopy(theirs))
    assert known.delivered("MODIFIED", "Service", obj("Service", 12,
                                                       spec={"ports": [{"port": 3002}]}))


def test_pods_replica_sets_and_secrets_are_not_tracked() -> None:
    known = LastKnown()
    for kind in ("Pod", "ReplicaSet", "Secret"):
        same = obj(kind, 10)
        known.wrote(same)
        assert known.delivered("MODIFIED", kind, same)
        assert known.delivered("MODIFIED", kind, same)
    assert len(known) == 0


def test_a_child_added_before_its_write_is_recorded_is_news_unless_it_is_by_then() -> None:
    """The event loop can deliver a created child before the reconcile thread that created
    it records its write: the answer is a check, asked when the wake would fire."""
    known = LastKnown()
    sa = obj("ServiceAccount", 10)
    check = known.delivered("ADDED", "ServiceAccount", sa)
    assert callable(check)
    assert not check()
    known.wrote(copy.deepcopy(sa))
    assert check()
    assert not known.delivered("MODIFIED", "ServiceAccount", sa)   # the write is known now

    someone_elses = known.delivered("ADDED", "ConfigMap", obj("ConfigMap", 20, data={}))
    assert callable(someone_elses)
    known.wrote(obj("ConfigMap", 21, data={"a": "1"}))   # a later version: not this one
    assert not someone_elses()
    assert known.delivered("MODIFIED", "ConfigMap", obj("ConfigMap", 22, data={"b": "2"}))
