"""What the operator's startup sets in kopf: the log filter (kopf's success line of our event
handlers is dropped, everything else it logs stays) and the server-side label selectors."""

from __future__ import annotations

import logging
from typing import Any

import kopf
import pytest
from kopf._cogs.structs import references

from authz_operator import handlers, indexes, kinds
from authz_operator.kube import Kube


def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)


def test_only_the_event_handlers_success_lines_are_dropped() -> None:
    quiet = handlers.QuietWatchers()
    for handler_id in ("child-pods", "child-deployments", "child-jobs",
                       "resource_gone", "secret_changed"):
        assert not quiet.filter(record(f"Handler {handler_id!r} succeeded."))
    assert quiet.filter(record("Handler 'reconcile' succeeded."))
    assert quiet.filter(record("Creation is processed: 1 succeeded; 0 failed."))
    assert quiet.filter(record("Handler 'child-pods' failed with an exception and will stop "
                               "now: boom", logging.ERROR))


def configured(monkeypatch: pytest.MonkeyPatch, times: int = 1,
               standalone: bool = False) -> kopf.OperatorSettings:
    """kopf's settings after the startup handler ran `times` times in this process."""
    monkeypatch.setattr(Kube, "connect", classmethod(lambda cls, path=None: None))
    monkeypatch.delenv("AUTHZ_METRICS_PORT", raising=False)
    monkeypatch.delenv("WATCH_NAMESPACES", raising=False)
    empty: dict[str, dict[Any, Any]] = {
        "secret_refs": {}, **{index_id: {} for index_id in indexes.INDEX_IDS.values()}}
    configure: Any = handlers.configure   # kopf's decorator types it as an activity
    memo = kopf.Memo()
    settings = kopf.OperatorSettings()
    settings.peering.standalone = standalone
    try:
        for _ in range(times):
            configure(settings=settings, memo=memo, **empty)
    finally:
        memo["resync"].stop()
        memo["wakeups"].stop()
    return settings


def test_startup_installs_the_filter_once(monkeypatch: pytest.MonkeyPatch) -> None:
    configured(monkeypatch, times=2)   # as tests start the operator again in one process
    objects = logging.getLogger("kopf.objects")
    assert sum(isinstance(f, handlers.QuietWatchers) for f in objects.filters) == 1


def test_a_replica_starts_paused_until_the_peering_object_says_it_acts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf's mandatory peering (peering.py): never two replicas acting at start-up."""
    assert configured(monkeypatch).peering.mandatory
    assert not configured(monkeypatch, standalone=True).peering.mandatory


def resource(kind: kinds.Kind) -> references.Resource:
    return references.Resource(group=kind.group, version=kind.version, plural=kind.plural,
                               kind=kind.kind, namespaced=True)


def test_kopf_watches_only_our_objects_of_the_kinds_we_make(
        monkeypatch: pytest.MonkeyPatch) -> None:
    selectors = configured(monkeypatch).watching.label_selectors
    ours = ["app.kubernetes.io/managed-by=authz-operator"]
    for kind in (*(c.kind for c in kinds.CHILDREN), kinds.JOB):
        assert selectors.collect(resource(kind)) == ours, kind.kind
    # of pods, only the serving ones: a migration Job's pods are never sent
    assert selectors.collect(resource(kinds.POD)) == [
        "app.kubernetes.io/component=server,app.kubernetes.io/managed-by=authz-operator,"
        "app.kubernetes.io/name=authorization-service"]
    # ... and of those only the running ones: a crash-looping pod stays Running
    fields = configured(monkeypatch).watching.field_selectors
    assert fields.collect(resource(kinds.POD)) == ["status.phase=Running"]
    for kind in (*(c.kind for c in kinds.CHILDREN), kinds.JOB, kinds.SECRET, kinds.RESOURCE):
        assert fields.collect(resource(kind)) == [], kind.kind
    # a team's Secret carries no label of ours; every resource is served
    assert selectors.collect(resource(kinds.SECRET)) == []
    assert selectors.collect(resource(kinds.RESOURCE)) == []


def pod(waiting: str | None, restarts: int = 1) -> dict[str, Any]:
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    return {"kind": "Pod", "metadata": {"name": "p", "namespace": "ns"},
            "status": {"containerStatuses": [
                {"name": "server", "state": state, "restartCount": restarts}]}}


def test_a_pod_event_wakes_its_resource_only_when_a_container_crash_loops() -> None:
    matters: Any = handlers._pod_matters
    assert matters(body=pod("CrashLoopBackOff"), type="MODIFIED")
    assert matters(body=pod("CrashLoopBackOff"), type="DELETED")
    # Pending, Running, Ready: the Deployment's status says it, and wakes the resource
    assert not matters(body=pod("ContainerCreating", restarts=0), type="ADDED")
    assert not matters(body=pod(None), type="MODIFIED")
    assert not matters(body={"kind": "Pod", "metadata": {}}, type="ADDED")
    # the kubelet's back-off before any restart is not yet a crash (crash_message agrees)
    assert not matters(body=pod("CrashLoopBackOff", restarts=0), type="MODIFIED")
    # a listing (the operator's start, a watch listing again) is noticed by the resync
    assert matters(body=pod(None), type=None)
