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
    for handler_id in ("child-pods", "child-deployments", "child-replicasets",
                       "resource_gone", "secret_changed"):
        assert not quiet.filter(record(f"Handler {handler_id!r} succeeded."))
    assert quiet.filter(record("Handler 'reconcile' succeeded."))
    assert quiet.filter(record("Creation is processed: 1 succeeded; 0 failed."))
    assert quiet.filter(record("Handler 'child-pods' failed with an exception and will stop "
                               "now: boom", logging.ERROR))


def configured(monkeypatch: pytest.MonkeyPatch, times: int = 1) -> kopf.OperatorSettings:
    """kopf's settings after the startup handler ran `times` times in this process."""
    monkeypatch.setattr(Kube, "connect", classmethod(lambda cls, path=None: None))
    monkeypatch.delenv("AUTHZ_METRICS_PORT", raising=False)
    empty: dict[str, dict[Any, Any]] = {
        "secret_refs": {}, **{index_id: {} for index_id in indexes.INDEX_IDS.values()}}
    configure: Any = handlers.configure   # kopf's decorator types it as an activity
    memo = kopf.Memo()
    settings = kopf.OperatorSettings()
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


def resource(kind: kinds.Kind) -> references.Resource:
    return references.Resource(group=kind.group, version=kind.version, plural=kind.plural,
                               kind=kind.kind, namespaced=True)


def test_kopf_watches_only_our_objects_of_the_kinds_we_make(
        monkeypatch: pytest.MonkeyPatch) -> None:
    selectors = configured(monkeypatch).watching.label_selectors
    ours = ["app.kubernetes.io/managed-by=authz-operator"]
    for kind in (*(c.kind for c in kinds.CHILDREN), kinds.JOB, kinds.POD, kinds.REPLICA_SET):
        assert selectors.collect(resource(kind)) == ours, kind.kind
    # a team's Secret carries no label of ours; every resource is served
    assert selectors.collect(resource(kinds.SECRET)) == []
    assert selectors.collect(resource(kinds.RESOURCE)) == []
