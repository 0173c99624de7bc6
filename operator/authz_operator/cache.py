"""What a reconcile reads: from kopf's watches, not a request each time.

`Reads` is what `reconciler.reconcile` asks for: the resource itself, its children, the
migration Jobs, the serving pods, the orphaned ReplicaSets and the referenced Secrets. Two
answers:

- `ApiReads`: a GET or LIST per question (the operator before issue 11; the unit tests' fake
  API and anything run without kopf use it).
- `WatchCache`: kopf's indexes (`indexes.py`, fed by the watches kopf runs anyway), plus what
  this process wrote and the watch has not delivered yet. No request in the steady state.
  ReplicaSets are not watched: orphaned ones are listed when `lifecycle.selector` wants them
  (`Orphans`), which is almost never.

What kopf 1.45.2 guarantees, and what it does not (kopf/_core/reactor/processing.py,
kopf/_core/engines/indexing.py, docs/indexing.rst "Guarantees" and "Conditional indexing"):

1. Pre-population: no resource handler runs before every index has seen the initial listing
   of every indexed kind (`operator_indexed.wait_for(True)` in `process_resource_event`;
   docs: "fully pre-populated before any other resource-related handlers are invoked"). A
   resume after a restart therefore finds every child: it writes nothing (the zero-writes
   test's restart).
2. Order within one object: `process_resource_event` updates the indexes with an event
   (`index_resource`) before it calls that event's handlers. A child's event handler wakes
   a reconcile that sees at least that version of the child. Across objects and kinds there
   is no order: one reconcile may see the new Deployment and an older Job.
3. Deletion: a DELETED event removes the object's values from every index before the
   handlers run; so does an object that stops matching an index's filters. Returning None
   from an indexing function keeps the old values: the functions here return {} instead.
4. Not guaranteed: a watch that restarts from a fresh LIST (`continuous_watch` after
   "410 Gone", after a connection error while listing, or after a peering pause) re-indexes
   the objects it lists but never removes one deleted meanwhile: no DELETED event comes for
   it. `resync.py` finds such leftovers by a slow, periodic LIST and hides them here.
5. Threads: the indexes are plain dicts changed only on the event loop; our handlers are
   sync and reconcile in kopf's executor threads. docs/indexing.rst says indices "are safe
   to be passed to threads"; each read here is one lookup and a `list()` copy of one store
   (single operations under the GIL), and a copy that still meets a store changing size
   (RuntimeError; possible without the GIL) is taken again.

Read-your-writes: a reconcile's apply (or its status patch) returns the object the API
server stored; until the watch delivers that version (or a newer one), reads answer with it:
otherwise the next reconcile, woken by the very event of its own write, could compare against
the older copy and write again (for the resource: post the same events and status once
more). A delete hides the deleted object (by uid) until the watch drops it.
Newer is compared by resourceVersion as an integer (`trim.resource_version` says why that is
acceptable). A written copy the watch never confirms (its kind's watch is down, the object
was changed so it left the index) is trusted for `WRITTEN_TTL` seconds at most.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from authz_operator import resources as r
from authz_operator import trim
from authz_operator.kube import Kube
from authz_operator.labels import LABEL_INSTANCE, MANAGED
from authz_operator.lifecycle.model import SecretView
from authz_operator.lifecycle.selector import Orphans
from authz_operator.news import LastKnown
from authz_operator.spec import KIND

Obj = dict[str, Any]
Index = Mapping[Any, Iterable[Any]]   # kopf.Index: key -> kopf.Store (values)
Key = tuple[str, str, str]            # (kind, namespace, name)
WRITTEN_TTL = 300.0
COPY_ATTEMPTS = 5


class Reads(Protocol):
    """Where `reconciler.reconcile` reads from, and what `reconciler.act` tells it it wrote."""

    def resource(self, namespace: str, name: str) -> Obj | None:
        """The AuthorizationService, or None when it is gone."""
        ...

    def child(self, kind: str, namespace: str, name: str, confirm_absent: bool) -> Obj | None:
        """The child, or None. `confirm_absent`: an absent child is about to be created, so
        make sure it is absent (not just someone else's, outside the watch)."""
        ...

    def jobs(self, namespace: str, owner: str) -> list[Obj]: ...
    def pods(self, namespace: str, owner: str) -> list[Obj]: ...
    def replica_sets(self, namespace: str, owner: str, wanted: Orphans) -> list[Obj]:
        """The resource's ReplicaSets, when `wanted` (`lifecycle.selector.orphans_wanted`)."""
        ...

    def secret(self, namespace: str, name: str) -> SecretView | None: ...
    def wrote(self, obj: Mapping[str, Any] | None) -> None: ...
    def deleted(self, kind: str, namespace: str, name: str, uid: str | None,
                response: Mapping[str, Any] | None) -> None: ...


def _selector(labels: Mapping[str, str]) -> str:
    return r.selector_string(dict(labels))


def job_labels(owner: str) -> dict[str, str]:
    return {LABEL_INSTANCE: owner, **MANAGED}


def _list_replica_sets(kube: Kube, namespace: str, owner: str) -> list[Obj]:
    return kube.list("ReplicaSet", namespace, _selector(r.selector_labels(owner)))


class ApiReads:
    """One request per question."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def resource(self, namespace: str, name: str) -> Obj | None:
        return self.kube.get(KIND, namespace, name)

    def child(self, kind: str, namespace: str, name: str, confirm_absent: bool) -> Obj | None:
        # Every answer here is a GET: a confirmation (absent a moment ago) asks again.
        return self.kube.get(kind, namespace, name)

    def jobs(self, namespace: str, owner: str) -> list[Obj]:
        return self.kube.list("Job", namespace, _selector(job_labels(owner)))

    def pods(self, namespace: str, owner: str) -> list[Obj]:
        return self.kube.list("Pod", namespace, _selector(r.serving_selector(owner)))

    def replica_sets(self, namespace: str, owner: str, wanted: Orphans) -> list[Obj]:
        # No memory of an earlier look: IF_FOUND lists too.
        return [] if wanted is Orphans.NO else _list_replica_sets(self.kube, namespace, owner)

    def secret(self, namespace: str, name: str) -> SecretView | None:
        return self.kube.secret_view(namespace, name)

    def wrote(self, obj: Mapping[str, Any] | None) -> None:
        pass

    def deleted(self, kind: str, namespace: str, name: str, uid: str | None,
                response: Mapping[str, Any] | None) -> None:
        pass


def values(index: Index | None, key: Any) -> list[Any]:
    """A copy of the values an index holds under `key` (module docstring, point 5), unpacked
    (`trim.pack`): each read is a copy of its own."""
    if index is None:
        return []
    for _ in range(COPY_ATTEMPTS):
        try:
            store = index.get(key)
            return [trim.unpack(v) for v in list(store)] if store is not None else []
        except RuntimeError:   # the store changed size while being copied
            continue
    return []


@dataclass(frozen=True)
class Written:
    obj: Obj          # trimmed, as the API server returned it
    at: float         # when (the clock's seconds)


@dataclass(frozen=True)
class Gone:
    """Hide the object with this uid (None: whatever its uid), at most at version `upto`
    (None: any version)."""

    uid: str | None
    upto: int | None = None

    def hides(self, obj: Mapping[str, Any]) -> bool:
        if self.uid is not None and (obj.get("metadata") or {}).get("uid") != self.uid:
            return False
        rv = trim.resource_version(obj)
        return self.upto is None or rv is None or rv <= self.upto

    def hides_secret(self, view: SecretView) -> bool:
        rv = int(view.resource_version) if view.resource_version.isdigit() else None
        return self.upto is None or rv is None or rv <= self.upto


def _uid(obj: Mapping[str, Any]) -> str | None:
    uid = (obj.get("metadata") or {}).get("uid")
    return None if uid is None else str(uid)


def _newest(objs: list[Obj]) -> Obj | None:
    """Two copies under one name: an object deleted and made again, before the watch
    delivered the deletion. The newer one counts."""
    if not objs:
        return None
    return max(objs, key=lambda o: trim.resource_version(o) or 0)


def _not_older(cached: Obj | None, written: Obj) -> bool:
    """The watch's copy is at least as new as what we wrote (then it replaces it)."""
    if cached is None:
        return False
    a, b = trim.resource_version(cached), trim.resource_version(written)
    return a is None or b is None or a >= b


class WatchCache:
    """kopf's indexes (by kind: `indexes.INDEX_IDS`), our writes over them, and a GET for
    a child that is about to be created (the watch sees only objects that resources own:
    someone else's object of that name shows only to a GET, and must not be overwritten)
    and for a Secret the cache does not have (it is reported missing otherwise)."""

    def __init__(self, kube: Kube, indexes: Mapping[str, Index],
                 clock: Callable[[], float] = time.monotonic, ttl: float = WRITTEN_TTL) -> None:
        self.kube = kube
        self.indexes = indexes
        self.clock = clock
        self.ttl = ttl
        self._lock = threading.Lock()
        self._written: dict[Key, Written] = {}
        self._gone: dict[Key, Gone] = {}
        self.known = LastKnown()   # what a child's event must differ from to wake a reconcile
        # (namespace, resource) -> whether its last look at ReplicaSets found orphans
        self._orphans: dict[tuple[str, str], bool] = {}

    # -- reads -----------------------------------------------------------------------------

    def resource(self, namespace: str, name: str) -> Obj | None:
        """From the index, or our own newer write of it (a status patch). One the index does
        not hold is asked for by a GET: created a moment ago (a child's or a Secret's event
        can come first), or deleted, and then a copy we wrote before must not revive it."""
        key = (KIND, namespace, name)
        cached = values(self.indexes.get(KIND), (namespace, name))
        found = self._merged(key, cached) if cached else None
        if found is not None:
            return found
        with self._lock:
            self._written.pop(key, None)
        live = self.kube.get(KIND, namespace, name)
        return None if live is None else trim.resource(live)

    def child(self, kind: str, namespace: str, name: str, confirm_absent: bool) -> Obj | None:
        found = self._merged((kind, namespace, name),
                             values(self.indexes.get(kind), (namespace, name)))
        if found is None and confirm_absent:
            live = self.kube.get(kind, namespace, name)
            return None if live is None else trim.trimmed(live)
        return found

    def jobs(self, namespace: str, owner: str) -> list[Obj]:
        return self._collection("Job", namespace, owner)

    def pods(self, namespace: str, owner: str) -> list[Obj]:
        return self._collection("Pod", namespace, owner)

    def replica_sets(self, namespace: str, owner: str, wanted: Orphans) -> list[Obj]:
        """A LIST (fresh, so it cannot miss the orphans of a Deployment whose deletion was
        just delivered), when wanted. NO also counts as a look that found none: orphans
        appear only where a later reconcile is told to LOOK (the Deployment is gone). A
        resource not seen since the operator started is looked at once (a restart between
        ADOPT and CLEANUP)."""
        key = (namespace, owner)
        with self._lock:
            if wanted is Orphans.NO:
                self._orphans[key] = False
                return []
            if wanted is Orphans.IF_FOUND and not self._orphans.get(key, True):
                return []
        found = [rs for rs in _list_replica_sets(self.kube, namespace, owner)
                 if trim.orphaned(rs)]
        with self._lock:
            self._orphans[key] = bool(found)
        return found

    def secret(self, namespace: str, name: str) -> SecretView | None:
        views = [v for v in values(self.indexes.get("Secret"), (namespace, name))
                 if isinstance(v, SecretView)]
        with self._lock:
            gone = self._gone.get(("Secret", namespace, name))
            if gone is not None and not views:
                del self._gone[("Secret", namespace, name)]
            elif gone is not None:
                views = [v for v in views if not gone.hides_secret(v)]
        if not views:
            # Confirmed: a Secret made just before the resource may not have reached the
            # cache yet (another watch), and a missing Secret is reported and holds the
            # Deployment. While it is missing, each reconcile asks again (a GET).
            return self.kube.secret_view(namespace, name)
        return max(views, key=lambda v: int(v.resource_version)
                   if v.resource_version.isdigit() else 0)

    # -- writes ----------------------------------------------------------------------------

    def wrote(self, obj: Mapping[str, Any] | None) -> None:
        """An apply or a patch returned `obj`: read it until the watch has it."""
        self.known.wrote(obj)
        if not obj or str(obj.get("kind")) not in trim.TRIMS:
            return
        meta = obj.get("metadata") or {}
        key = (str(obj["kind"]), str(meta.get("namespace")), str(meta.get("name")))
        with self._lock:
            self._expire()
            self._written[key] = Written(trim.trimmed(obj), self.clock())
            self._gone.pop(key, None)

    def deleted(self, kind: str, namespace: str, name: str, uid: str | None,
                response: Mapping[str, Any] | None) -> None:
        """A DELETE of `kind/name` (precondition `uid`) returned `response`: the object,
        still there while finalizers run (an orphaning delete), or a Status when it is
        gone (or None: it was gone already, or `uid` was no longer its uid)."""
        if kind not in trim.TRIMS:   # listed, never cached (ReplicaSets): nothing to hide
            return
        if response and response.get("kind") == kind and (
                response.get("metadata") or {}).get("deletionTimestamp"):
            self.wrote(response)
            return
        uid = uid or (_uid(response) if response and response.get("kind") == kind else None)
        with self._lock:
            key = (kind, namespace, name)
            written = self._written.get(key)
            if written is not None and (uid is None or _uid(written.obj) == uid):
                del self._written[key]
            if uid is not None:
                self._gone[key] = Gone(uid)   # a uid is never used again: hide any version

    def forget(self, kind: str, namespace: str, name: str, uid: str | None) -> None:
        """The watch delivered the object's deletion: drop our copy of it."""
        with self._lock:
            if kind == KIND:
                self._orphans.pop((namespace, name), None)
            key = (kind, namespace, name)
            written = self._written.get(key)
            if written is not None and (uid is None or _uid(written.obj) == uid):
                del self._written[key]
            gone = self._gone.get(key)
            if gone is not None and (uid is None or gone.uid == uid):
                del self._gone[key]

    def seen(self, kind: str, namespace: str, name: str, resource_version: Any) -> None:
        """The watch delivered this version of the object (its index has it now): a copy we
        wrote that is not newer is dropped at once, not when a later read finds it stale or
        after `ttl`. At 1,000 resources the last write of each child and status would
        otherwise stay in memory beside the index's copy (issue 11)."""
        seen = trim.resource_version({"metadata": {"resourceVersion": resource_version}})
        with self._lock:
            written = self._written.get((kind, namespace, name))
            if written is None:
                return
            mine = trim.resource_version(written.obj)
            if seen is None or mine is None or seen >= mine:
                del self._written[(kind, namespace, name)]

    def hide(self, kind: str, namespace: str, name: str, gone: Gone) -> None:
        """A LIST at version `gone.upto` did not have the object (`resync`)."""
        with self._lock:
            self._gone[(kind, namespace, name)] = gone

    def pending(self) -> tuple[int, int]:
        """How many written copies and hidden objects wait for the watch (for tests and
        the metrics)."""
        with self._lock:
            return len(self._written), len(self._gone)

    # -- merging ---------------------------------------------------------------------------

    def _expire(self) -> None:
        now = self.clock()
        for key in [k for k, w in self._written.items() if now - w.at > self.ttl]:
            del self._written[key]

    def _merged(self, key: Key, cached: list[Obj]) -> Obj | None:
        with self._lock:
            gone = self._gone.get(key)
            if gone is not None:
                if not any(gone.uid in (None, _uid(o)) for o in cached):
                    del self._gone[key]      # the watch dropped it too
                    gone = None
                else:
                    cached = [o for o in cached if not gone.hides(o)]
            newest = _newest(cached)
            written = self._written.get(key)
            if written is None:
                return newest
            if _not_older(newest, written.obj) or self.clock() - written.at > self.ttl:
                del self._written[key]
                return newest
            return written.obj

    def _collection(self, kind: str, namespace: str, owner: str) -> list[Obj]:
        by_name: dict[str, list[Obj]] = {}
        for obj in values(self.indexes.get(kind), (namespace, owner)):
            by_name.setdefault(str(obj["metadata"]["name"]), []).append(obj)
        with self._lock:
            for (k, ns, name), w in self._written.items():
                if k == kind and ns == namespace and trim.controller_owner(w.obj) == owner:
                    by_name.setdefault(name, [])
        found = (self._merged((kind, namespace, name), objs) for name, objs in by_name.items())
        return sorted((o for o in found if o is not None),
                      key=lambda o: str(o["metadata"]["name"]))
