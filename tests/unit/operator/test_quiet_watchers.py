"""kopf's success line of our event handlers is dropped; everything else it logs stays."""

from __future__ import annotations

import logging
from typing import Any

import kopf
import pytest

from authz_operator import handlers, indexes
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


def test_startup_installs_the_filter_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Kube, "connect", classmethod(lambda cls, path=None: None))
    monkeypatch.delenv("AUTHZ_METRICS_PORT", raising=False)
    empty: dict[str, dict[Any, Any]] = {
        "secret_refs": {}, **{index_id: {} for index_id in indexes.INDEX_IDS.values()}}
    configure: Any = handlers.configure   # kopf's decorator types it as an activity
    memo = kopf.Memo()
    try:
        for _ in range(2):   # as tests start the operator again in one process
            configure(settings=kopf.OperatorSettings(), memo=memo, **empty)
        objects = logging.getLogger("kopf.objects")
        assert sum(isinstance(f, handlers.QuietWatchers) for f in objects.filters) == 1
    finally:
        memo["resync"].stop()
        memo["wakeups"].stop()
