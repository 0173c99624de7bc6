"""Our indexing functions through kopf's own indexer (the entry point kopf calls for every
watch event before the event's handlers), read back through the watch cache."""

from __future__ import annotations

import inspect
import logging
from typing import Any

import kopf
import pytest
from kopf._cogs.configs import configuration
from kopf._cogs.structs import bodies, ephemera, references
from kopf._core.engines import indexing

from authz_operator import handlers, indexes, kinds
from authz_operator import resources as r
from authz_operator.cache import WatchCache
from authz_operator.kinds import Kind
from authz_operator.kube import Kube
from authz_operator.lifecycle import SecretView

from .samples import OWNER

NS = OWNER.namespace
assert handlers.RECONCILE   # registers the handlers and (through them) the indexes


class Indexers:
    def __init__(self) -> None:
        self.registry = kopf.get_default_registry()
        self.indexers = indexing.OperatorIndexers()
        self.indexers.ensure(self.registry._indexing.get_all_handlers())
        self.cache = WatchCache(None, {kind: self.indexers.indices[index_id]  # type: ignore[arg-type]
                                       for kind, index_id in indexes.INDEX_IDS.items()})

    async def event(self, kind: Kind, raw: dict[str, Any], type_: str = "ADDED") -> None:
        resource = references.Resource(group=kind.group, version=kind.version,
                                       plural=kind.plural, kind=kind.kind, namespaced=True)
        await indexing.index_resource(
            indexers=self.indexers, registry=self.registry,
            settings=configuration.OperatorSettings(), resource=resource,
            raw_event={"type": type_, "object": raw},  # type: ignore[typeddict-item]
            memory=indexing.IndexingMemory(), logger=logging.getLogger(__name__),
            memo=ephemera.AnyMemo(kopf.Memo()), body=bodies.Body(raw))  # type: ignore[arg-type]


def config_map(name: str, owned: bool, rv: str = "5") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}",
                         "resourceVersion": rv, "managedFields": [{"manager": "m"}],
                         "ownerReferences": [r.owner_reference(OWNER)] if owned else []},
            "data": {"a": rv}}


def test_every_kind_a_reconcile_reads_has_an_index() -> None:
    registered = {str(h.id) for h in kopf.get_default_registry()._indexing.get_all_handlers()}
    assert set(indexes.INDEX_IDS.values()) <= registered
    assert set(indexes.INDEX_IDS) == {"AuthorizationService", *r.OWNED_KINDS, "Job", "Pod",
                                      "Secret"}


async def test_a_child_is_indexed_trimmed_and_removed_when_deleted_or_disowned() -> None:
    idx = Indexers()
    name = r.child_name(OWNER.name, "ConfigMap")
    await idx.event(kinds.CONFIG_MAP, config_map(name, owned=True))
    await idx.event(kinds.CONFIG_MAP, config_map("kube-root-ca.crt", owned=False))
    found = idx.cache.child("ConfigMap", NS, name, confirm_absent=False)
    assert found is not None
    assert found["data"] == {"a": "5"}
    assert "managedFields" not in found["metadata"]
    assert idx.cache.child("ConfigMap", NS, "kube-root-ca.crt", confirm_absent=False) is None
    await idx.event(kinds.CONFIG_MAP, config_map(name, owned=True, rv="6"), "DELETED")
    assert idx.cache.child("ConfigMap", NS, name, confirm_absent=False) is None
    await idx.event(kinds.CONFIG_MAP, config_map(name, owned=True, rv="7"))
    await idx.event(kinds.CONFIG_MAP, config_map(name, owned=False, rv="8"), "MODIFIED")
    assert idx.cache.child("ConfigMap", NS, name, confirm_absent=False) is None
    assert len(idx.indexers.indices[indexes.INDEX_IDS["ConfigMap"]]) == 0


async def test_a_resource_is_indexed_without_kopfs_bookkeeping_and_dropped_when_deleted() -> None:
    idx = Indexers()
    raw: dict[str, Any] = {
        "apiVersion": "rwadurian.io/v1alpha1", "kind": "AuthorizationService",
        "metadata": {"name": OWNER.name, "namespace": NS, "uid": OWNER.uid,
                     "resourceVersion": "4", "generation": 2,
                     "managedFields": [{"manager": "kubectl"}],
                     "annotations": {
                         "authz.rwadurian.io/last-handled-configuration": '{"spec": "..."}',
                         "authz.rwadurian.io/reconcile": "{}", r.ANN_ROLLBACK_TO: "3"}},
        "spec": {"image": "img:1"}, "status": {"phase": "Ready"}}
    await idx.event(kinds.RESOURCE, raw)
    found = idx.cache.resource(NS, OWNER.name)
    assert found is not None
    assert found["metadata"]["annotations"] == {r.ANN_ROLLBACK_TO: "3"}
    assert "managedFields" not in found["metadata"]
    assert (found["spec"], found["status"]) == (raw["spec"], raw["status"])
    assert found["metadata"]["generation"] == 2
    await idx.event(kinds.RESOURCE, raw, "DELETED")
    assert len(idx.indexers.indices[indexes.INDEX_IDS["AuthorizationService"]]) == 0


async def test_a_secret_is_indexed_as_its_version_and_key_names() -> None:
    idx = Indexers()
    await idx.event(kinds.SECRET, {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s", "namespace": NS, "uid": "s", "resourceVersion": "9"},
        "data": {"jwt-secret": "czNjcjN0"}})
    assert idx.cache.secret(NS, "s") == SecretView("9", frozenset({"jwt-secret"}))
    assert "czNjcjN0" not in repr(dict(idx.indexers.indices[indexes.INDEX_IDS["Secret"]]))


def test_startup_gives_the_reconciler_the_cache_over_kopfs_indexes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from authz_operator.resync import Resync

    idx = Indexers()
    kwargs = {str(k): v for k, v in idx.indexers.indices.items()}
    monkeypatch.setattr(Kube, "connect", classmethod(lambda cls, path=None: None))
    monkeypatch.delenv("AUTHZ_METRICS_PORT", raising=False)
    memo = kopf.Memo()
    configure: Any = handlers.configure   # kopf's decorator types it as an activity
    configure(settings=kopf.OperatorSettings(), memo=memo, **kwargs)
    try:
        reads = memo["reconciler"].reads
        assert isinstance(reads, WatchCache)
        assert reads.indexes["Deployment"] is idx.indexers.indices["authz_deployments"]
    finally:
        resync = memo["resync"]
        assert isinstance(resync, Resync)
        resync.stop()


async def test_serving_pods_are_indexed_by_their_resource_and_others_are_not() -> None:
    idx = Indexers()

    def pod(name: str, component: r.Component) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": NS, "uid": name, "resourceVersion": "2",
                             "labels": r.pod_labels(OWNER.name, "img:1", component)},
                "spec": {"containers": [{"name": "c", "image": "img:1"}]}, "status": {}}
    await idx.event(kinds.POD, pod("serving", r.Component.SERVER))
    await idx.event(kinds.POD, pod("migrating", r.Component.MIGRATION))
    assert [p["metadata"]["name"] for p in idx.cache.pods(NS, OWNER.name)] == ["serving"]


def test_every_index_and_every_child_event_handler_runs_on_the_event_loop() -> None:
    """kopf runs a sync function in its executor: an index or event handler that ran for
    every event would wait there for a thread among the reconciles (issue 11). Only the
    handlers that reconcile (and so wait on the API) may be sync."""
    registry = kopf.get_default_registry()
    indexers = registry._indexing.get_all_handlers()
    watchers = registry._watching.get_all_handlers()
    assert indexers
    assert watchers
    sync = sorted(str(h.id) for h in [*indexers, *watchers]
                  if not inspect.iscoroutinefunction(h.fn))
    assert sync == [handlers.SECRET_CHANGED]   # runs only for a referenced Secret: reconciles
