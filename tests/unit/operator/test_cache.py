"""The watch cache over plain data: kopf's indexes are mappings of key -> values here, the
API is a fake, the clock a number. Read-your-writes, deletes, leftovers and the GET that
guards a create."""

from __future__ import annotations

import copy
import datetime
from typing import Any

from authz_operator import reconciler
from authz_operator import resources as r
from authz_operator.cache import Gone, WatchCache, values
from authz_operator.kube import Kube
from authz_operator.lifecycle import Orphans, SecretView

from .samples import OWNER, spec_body
from .test_reconciler import FakeKube

Obj = dict[str, Any]
NS, NAME = OWNER.namespace, OWNER.name
NOW = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)


def obj(kind: str, name: str, rv: int, uid: str = "u1", **extra: Any) -> Obj:
    return {"apiVersion": "v1", "kind": kind,
            "metadata": {"name": name, "namespace": NS, "uid": uid, "resourceVersion": str(rv),
                         "ownerReferences": [r.owner_reference(OWNER)],
                         "managedFields": [{"manager": "x"}], **extra},
            "data": {"k": str(rv)}}


class Reads:
    """The GETs the cache sends (only to confirm an absent child)."""

    def __init__(self, objects: dict[tuple[str, str], Obj] | None = None) -> None:
        self.objects = objects or {}
        self.gets: list[tuple[str, str]] = []

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        self.gets.append((kind, name))
        return copy.deepcopy(self.objects.get((kind, name)))

    def secret_view(self, namespace: str, name: str) -> SecretView | None:
        self.gets.append(("Secret", name))
        return SecretView("2", frozenset({"k"})) if name == "made-just-now" else None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def cache(index: dict[str, dict[Any, list[Any]]], api: Reads | None = None,
          clock: Clock | None = None) -> WatchCache:
    kube: Kube = api or Reads()  # type: ignore[assignment]
    return WatchCache(kube, index, clock=clock or Clock(), ttl=60)


def rv(found: Obj | None) -> str | None:
    return None if found is None else str(found["metadata"]["resourceVersion"])


def test_a_child_comes_from_the_index_and_an_absent_one_is_confirmed_only_when_wanted() -> None:
    index: dict[Any, list[Any]] = {(NS, "a"): [obj("ConfigMap", "a", 5)]}
    api = Reads({("ConfigMap", "b"): obj("ConfigMap", "b", 9, uid="someone-elses")})
    c = cache({"ConfigMap": index}, api)
    assert rv(c.child("ConfigMap", NS, "a", confirm_absent=True)) == "5"
    assert c.child("ConfigMap", NS, "b", confirm_absent=False) is None
    assert api.gets == []
    found = c.child("ConfigMap", NS, "b", confirm_absent=True)
    assert found is not None
    assert rv(found) == "9"
    assert "managedFields" not in found["metadata"]
    assert api.gets == [("ConfigMap", "b")]


def test_what_we_applied_is_read_until_the_watch_delivers_that_version() -> None:
    index: dict[Any, list[Any]] = {(NS, "a"): [obj("ConfigMap", "a", 5)]}
    c = cache({"ConfigMap": index})
    c.wrote(obj("ConfigMap", "a", 7))
    assert rv(c.child("ConfigMap", NS, "a", False)) == "7"    # the watch still has 5
    index[(NS, "a")] = [obj("ConfigMap", "a", 6)]               # someone's change before ours
    assert rv(c.child("ConfigMap", NS, "a", False)) == "7"
    index[(NS, "a")] = [obj("ConfigMap", "a", 8)]               # ours, and one after it
    assert rv(c.child("ConfigMap", NS, "a", False)) == "8"
    assert c.pending() == (0, 0)


def test_a_created_child_is_read_before_its_first_event() -> None:
    index: dict[Any, list[Any]] = {}
    c = cache({"Service": index})
    c.wrote(obj("Service", "a", 3))
    assert rv(c.child("Service", NS, "a", True)) == "3"
    index[(NS, "a")] = [obj("Service", "a", 3)]
    assert rv(c.child("Service", NS, "a", True)) == "3"
    assert c.pending() == (0, 0)


def test_a_deletion_the_watch_delivers_drops_our_copy() -> None:
    c = cache({"Service": {}})
    c.wrote(obj("Service", "a", 3, uid="u1"))
    c.forget("Service", NS, "a", "other-uid")
    assert rv(c.child("Service", NS, "a", False)) == "3"
    c.forget("Service", NS, "a", "u1")
    assert c.child("Service", NS, "a", False) is None


def test_a_copy_the_watch_never_confirms_is_trusted_for_the_ttl_only() -> None:
    clock = Clock()
    index: dict[Any, list[Any]] = {(NS, "a"): [obj("ConfigMap", "a", 5)]}
    c = cache({"ConfigMap": index}, clock=clock)
    c.wrote(obj("ConfigMap", "a", 7))
    clock.now += 61
    assert rv(c.child("ConfigMap", NS, "a", False)) == "5"
    assert c.pending() == (0, 0)


def test_a_deleted_child_is_hidden_until_the_watch_drops_it() -> None:
    index: dict[Any, list[Any]] = {(NS, "a"): [obj("Ingress", "a", 5, uid="old")]}
    c = cache({"Ingress": index})
    c.deleted("Ingress", NS, "a", "old", {"kind": "Status", "status": "Success"})
    assert c.child("Ingress", NS, "a", False) is None
    index[(NS, "a")] = [obj("Ingress", "a", 5, uid="old"), obj("Ingress", "a", 9, uid="new")]
    assert rv(c.child("Ingress", NS, "a", False)) == "9"      # made again by someone
    del index[(NS, "a")]
    assert c.child("Ingress", NS, "a", False) is None
    assert c.pending() == (0, 0)


def test_an_orphaning_delete_shows_the_deployment_terminating() -> None:
    index: dict[Any, list[Any]] = {(NS, "a"): [obj("Deployment", "a", 5, uid="d")]}
    c = cache({"Deployment": index})
    answer = obj("Deployment", "a", 6, uid="d", deletionTimestamp="2026-01-02T00:00:00Z",
                 finalizers=["orphan"])
    c.deleted("Deployment", NS, "a", "d", answer)
    found = c.child("Deployment", NS, "a", False)
    assert found is not None
    assert found["metadata"]["deletionTimestamp"]


def test_a_delete_that_found_nothing_hides_the_uid_it_named() -> None:
    index: dict[Any, list[Any]] = {(NS, NAME): [obj("Job", "migrate-1", 5, uid="x")]}
    c = cache({"Job": index})
    c.deleted("Job", NS, "migrate-1", "x", None)     # 404: a leftover of a missed deletion
    assert c.jobs(NS, NAME) == []


class Lists(Reads):
    """Counts the LISTs of ReplicaSets; `sets` is what the API server holds."""

    def __init__(self, sets: list[Obj]) -> None:
        super().__init__()
        self.sets = sets
        self.lists: list[str] = []

    def list(self, kind: str, namespace: str, label_selector: str) -> list[Obj]:
        self.lists.append(kind)
        return copy.deepcopy(self.sets)


def replica_set(name: str, owned: bool) -> Obj:
    refs = [{"kind": "Deployment", "name": NAME, "controller": True}] if owned else []
    return {"kind": "ReplicaSet", "metadata": {"name": name, "namespace": NS,
                                               "labels": r.selector_labels(NAME),
                                               "ownerReferences": refs}}


def test_replica_sets_are_listed_only_while_an_orphan_can_matter() -> None:
    api = Lists([replica_set("owned", owned=True), replica_set("orphan", owned=False)])
    c = cache({}, api)

    def names(wanted: Orphans) -> list[str]:
        return [x["metadata"]["name"] for x in c.replica_sets(NS, NAME, wanted)]

    assert names(Orphans.IF_FOUND) == ["orphan"]   # first look since the start: a LIST
    assert names(Orphans.IF_FOUND) == ["orphan"]   # found some: looked at again
    api.sets = [replica_set("owned", owned=True)]  # CLEANUP deleted it
    assert names(Orphans.IF_FOUND) == []
    assert names(Orphans.IF_FOUND) == []           # found none: no LIST any more
    assert names(Orphans.NO) == []
    assert len(api.lists) == 3
    api.sets = [replica_set("orphan", owned=False)]    # the Deployment was orphan-deleted
    assert names(Orphans.LOOK) == ["orphan"]
    assert names(Orphans.IF_FOUND) == ["orphan"]   # ADOPT made the Deployment again
    assert len(api.lists) == 5
    c.forget("AuthorizationService", NS, NAME, None)   # the resource is gone: so is its memory
    api.sets = []
    assert names(Orphans.IF_FOUND) == []
    assert len(api.lists) == 6
    # a new resource: no Deployment yet, never deployed (NO) counts as a look that found none
    assert c.replica_sets(NS, "new", Orphans.NO) == []
    assert c.replica_sets(NS, "new", Orphans.IF_FOUND) == []
    assert len(api.lists) == 6


def test_a_leftover_the_resync_found_is_hidden_unless_changed_since() -> None:
    index: dict[Any, list[Any]] = {(NS, "a"): [obj("ConfigMap", "a", 10, uid="u")]}
    c = cache({"ConfigMap": index})
    c.hide("ConfigMap", NS, "a", Gone("u", upto=10))
    assert c.child("ConfigMap", NS, "a", False) is None
    index[(NS, "a")] = [obj("ConfigMap", "a", 11, uid="u")]   # its label came back
    assert rv(c.child("ConfigMap", NS, "a", False)) == "11"


def test_jobs_are_the_watched_ones_and_the_one_just_created() -> None:
    jobs: dict[Any, list[Any]] = {(NS, NAME): [obj("Job", f"{NAME}-migrate-1", 4, uid="j1")]}
    c = cache({"Job": jobs})
    created = obj("Job", f"{NAME}-migrate-2", 8, uid="j2")
    created["kind"] = "Job"
    c.wrote(created)
    assert [j["metadata"]["name"] for j in c.jobs(NS, NAME)] == [
        f"{NAME}-migrate-1", f"{NAME}-migrate-2"]
    assert c.jobs(NS, "another") == []


def test_two_copies_under_one_name_the_newer_counts() -> None:
    index: dict[Any, list[Any]] = {(NS, "a"): [obj("Service", "a", 12, uid="new"),
                                              obj("Service", "a", 4, uid="old")]}
    assert rv(cache({"Service": index}).child("Service", NS, "a", False)) == "12"


def test_an_opaque_resource_version_trusts_the_watch() -> None:
    index: dict[Any, list[Any]] = {(NS, "a"): [obj("Service", "a", 1)]}
    index[(NS, "a")][0]["metadata"]["resourceVersion"] = "opaque"
    c = cache({"Service": index})
    c.wrote(obj("Service", "a", 7))
    assert rv(c.child("Service", NS, "a", False)) == "opaque"


def test_the_newest_secret_view_and_an_absent_one_confirmed() -> None:
    views: dict[Any, list[Any]] = {(NS, "s"): [SecretView("3", frozenset({"a"})),
                                              SecretView("10", frozenset({"a", "b"}))]}
    api = Reads()
    c = cache({"Secret": views}, api)
    assert c.secret(NS, "s") == SecretView("10", frozenset({"a", "b"}))
    assert api.gets == []
    assert c.secret(NS, "missing") is None
    assert c.secret(NS, "made-just-now") == SecretView("2", frozenset({"k"}))
    assert api.gets == [("Secret", "missing"), ("Secret", "made-just-now")]


class Flaky(dict[Any, Any]):
    """A store that changes size while it is copied, once."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def get(self, key: Any, default: Any = None) -> Any:
        if not self.failed:
            self.failed = True
            raise RuntimeError("dictionary changed size during iteration")
        return ["v"]


def test_a_store_changing_while_copied_is_copied_again() -> None:
    assert values(Flaky(), "k") == ["v"]
    assert values(None, "k") == []


# ---------------------------------------------------------------------------------------------
# the reconciler over the cache: the watch lags behind our writes


class Watch:
    """kopf's indexes as the watches would fill them, on demand (`deliver`)."""

    def __init__(self, api: FakeKube) -> None:
        self.api = api
        self.indexes: dict[str, dict[Any, list[Any]]] = {
            k: {} for k in ("AuthorizationService", *r.OWNED_KINDS, "Job", "Pod", "Secret")}
        self.indexes["Secret"][("ns", "authorization-secrets")] = [
            SecretView("1", frozenset({"database-url", "jwt-secret"}))]

    def deliver(self) -> None:
        for (kind, name), o in self.api.objects.items():
            if kind in self.indexes:
                self.indexes[kind][("ns", name)] = [copy.deepcopy(o)]


class CountingKube(FakeKube):
    def __init__(self, objects: dict[tuple[str, str], Any]) -> None:
        super().__init__(objects)
        self.reads: list[str] = []
        self.rv = 0

    def get(self, kind: str, namespace: str, name: str) -> Any:
        self.reads.append(f"get {kind}")
        return super().get(kind, namespace, name)

    def list(self, kind: str, namespace: str, label_selector: str) -> list[Any]:
        self.reads.append(f"list {kind}")
        return super().list(kind, namespace, label_selector)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        live = super().apply(obj)
        self.rv += 1
        live["metadata"]["resourceVersion"] = str(self.rv)
        return copy.deepcopy(live)

    def patch_status(self, namespace: str, name: str, old: Any, new: Any) -> Any:
        super().patch_status(namespace, name, old, new)
        self.rv += 1
        live = self.objects[("AuthorizationService", name)]
        live["metadata"]["resourceVersion"] = str(self.rv)
        return copy.deepcopy(live)


def resource_body() -> Obj:
    return {"apiVersion": "rwadurian.io/v1alpha1", "kind": "AuthorizationService",
            "metadata": {"name": "a", "namespace": "ns", "uid": "u", "generation": 1,
                         "resourceVersion": "1"},
            "spec": spec_body(migrations={"enabled": False})}


def test_the_reconcile_after_our_writes_writes_nothing_even_before_the_watch_delivers() -> None:
    api = CountingKube({("AuthorizationService", "a"): resource_body()})
    api.rv = 1
    watch = Watch(api)
    watch.deliver()                                   # the resource's ADDED event
    kube: Kube = api  # type: ignore[assignment]
    reads = WatchCache(kube, watch.indexes)

    reconciler.reconcile(kube, "ns", "a", clock=lambda: NOW, reads=reads)
    assert [w for w in api.writes if w.startswith("apply")] == [
        f"apply {k}" for k in r.OWNED_KINDS]      # the seed's spec wants every child
    # the first reconcile confirmed that every wanted child was absent (someone else's?);
    # the resource itself came from the watch
    assert sorted(api.reads) == sorted(f"get {k}" for k in r.OWNED_KINDS)

    api.writes.clear()
    api.reads.clear()
    reconciler.reconcile(kube, "ns", "a", clock=lambda: NOW, reads=reads)  # no event yet
    assert api.writes == ["status"]   # the Deployment seen: the phase moves on, events once
    assert api.reads == []

    api.writes.clear()
    reconciler.reconcile(kube, "ns", "a", clock=lambda: NOW, reads=reads)  # still no event
    assert api.writes == []           # our own status patch is read, not the watch's older copy

    watch.deliver()
    reconciler.reconcile(kube, "ns", "a", clock=lambda: NOW, reads=reads)
    assert api.writes == []
    assert api.reads == []                               # the steady state: no request
    assert reads.pending() == (0, 0)


def test_the_resource_comes_from_the_index_or_our_newer_status_patch() -> None:
    api = Reads({("AuthorizationService", "a"): resource_body()})
    index: dict[str, dict[Any, list[Any]]] = {
        "AuthorizationService": {("ns", "a"): [resource_body()]}}
    c = cache(index, api)
    assert rv(c.resource("ns", "a")) == "1"
    assert api.gets == []

    patched = {**resource_body(), "status": {"phase": "Ready"}}
    patched["metadata"]["resourceVersion"] = "2"
    c.wrote(patched)
    assert (c.resource("ns", "a") or {}).get("status") == {"phase": "Ready"}
    changed = {**resource_body(), "spec": {"replicas": 3}}
    changed["metadata"]["resourceVersion"] = "3"           # someone's later spec change
    index["AuthorizationService"][("ns", "a")] = [changed]
    assert rv(c.resource("ns", "a")) == "3"
    assert c.pending() == (0, 0)
    assert api.gets == []


def test_a_resource_the_index_lacks_is_asked_for_and_our_old_write_never_revives_it() -> None:
    api = Reads({("AuthorizationService", "new"): resource_body()})
    index: dict[str, dict[Any, list[Any]]] = {"AuthorizationService": {}}
    c = cache(index, api)
    assert rv(c.resource("ns", "new")) == "1"      # created a moment ago: a GET finds it
    patched = resource_body()
    patched["metadata"]["name"] = "gone"
    c.wrote(patched)                             # our status patch, then the resource deleted
    assert c.resource("ns", "gone") is None
    assert api.gets == [("AuthorizationService", "new"), ("AuthorizationService", "gone")]
    assert c.pending() == (0, 0)


def test_a_written_copy_goes_as_soon_as_the_watch_delivers_its_version() -> None:
    """Not left beside the index's copy until a read or the ttl (memory at 1,000)."""
    index: dict[Any, list[Any]] = {(NS, "a"): [obj("ConfigMap", "a", 5)]}
    c = cache({"ConfigMap": index})
    c.wrote(obj("ConfigMap", "a", 7))
    c.seen("ConfigMap", NS, "a", "6")          # someone's change before ours
    assert c.pending() == (1, 0)
    assert rv(c.child("ConfigMap", NS, "a", False)) == "7"
    index[(NS, "a")] = [obj("ConfigMap", "a", 7)]
    c.seen("ConfigMap", NS, "a", "7")
    assert c.pending() == (0, 0)
    assert rv(c.child("ConfigMap", NS, "a", False)) == "7"
    c.seen("ConfigMap", NS, "b", "1")          # nothing written: nothing to do
    c.wrote(obj("ConfigMap", "a", 9))
    c.seen("ConfigMap", NS, "a", "not-a-number")   # not comparable: the watch is trusted
    assert c.pending() == (0, 0)
