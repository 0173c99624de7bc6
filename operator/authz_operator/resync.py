"""Leftovers: objects the watch cache still holds that the API server deleted while a watch
was not running.

kopf lists a kind again when its watch cannot continue ("410 Gone" after an API server
restart, a failed listing, a peering pause): it re-indexes what it lists, and never learns
of what was deleted in between: no DELETED event comes for it (cache.py, point 4). Left
alone, such a leftover is a child that seems to exist (never made again), a Job that seems
to run (a migration that waits for ever), a Secret that seems to be there.

The listing is visible to the child event handlers (their `type` is None for an object
noticed by a listing). `Relists.noticed` tells a listing after the first one of its kind
(the operator's start) from the first; `Resync` then, once the burst has settled, LISTs
the metadata of each indexed kind in each namespace where the cache holds some, and hides
(`WatchCache.hide`) what the cache holds and the API server does not (unless the cache's copy
is newer than the list), then wakes the resources concerned. Nothing is listed in the
steady state; a replica paused by peering sees no events, so sweeps nothing either.

A kind with no object of ours at all lists nothing, so its listing goes unnoticed; an API
server restart lists every kind again, and one noticed listing sweeps every kind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from authz_operator import trim
from authz_operator.cache import Gone, WatchCache, values
from authz_operator.kube import Kube
from authz_operator.labels import LABEL_INSTANCE, watch_fields, watch_selector
from authz_operator.lifecycle.model import SecretView

log = logging.getLogger("authz_operator.resync")

Obj = dict[str, Any]
Wake = Callable[[str, str, str], None]            # (namespace, resource, why)
SETTLE_SECONDS = 30.0      # a listing's burst of events is over by then
BURST_SECONDS = 60.0       # events of one listing come closer together than this


class Relists:
    """When a kind was last listed (an event with type None), and whether a listing came
    after the first one."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._since: float | None = None     # when the first listing after the start came

    def noticed(self, kind: str) -> None:
        now = self.clock()
        with self._lock:
            last = self._last.get(kind)
            self._last[kind] = now
            if last is not None and now - last > BURST_SECONDS and self._since is None:
                self._since = now

    def due(self) -> bool:
        """A listing was noticed and its burst has settled: take the mark."""
        with self._lock:
            if self._since is None or self.clock() - self._since < SETTLE_SECONDS:
                return False
            self._since = None
            return True


def leftovers(cached: Iterable[Any], listed: Iterable[Mapping[str, Any]],
              version: int | None) -> list[Any]:
    """What the cache holds (objects, or SecretViews by name) that a LIST at `version` did
    not have, unless the cache's copy is newer than the list."""
    uids = {str((o.get("metadata") or {}).get("uid")) for o in listed}
    names = {str((o.get("metadata") or {}).get("name")) for o in listed}
    out: list[Any] = []
    for item in cached:
        if isinstance(item, tuple):          # (name, SecretView)
            name, view = item
            rv = int(view.resource_version) if view.resource_version.isdigit() else None
            if name not in names and (version is None or rv is None or rv <= version):
                out.append(item)
            continue
        rv = trim.resource_version(item)
        if str(item["metadata"].get("uid")) not in uids and (
                version is None or rv is None or rv <= version):
            out.append(item)
    return out


def _owner(kind: str, key: tuple[str, str], obj: Mapping[str, Any]) -> str | None:
    if kind in ("Job", "Pod"):
        return key[1]
    return trim.controller_owner(obj) or (obj["metadata"].get("labels") or {}).get(
        LABEL_INSTANCE)


class Resync:
    """Sweeps the cache's leftovers when `relists` says a kind was listed again."""

    def __init__(self, cache: WatchCache, kube: Kube, relists: Relists, wake: Wake,
                 readers: Callable[[str, str], list[str]], period: float = 5.0) -> None:
        self.cache, self.kube, self.relists, self.wake = cache, kube, relists, wake
        self.readers = readers          # (namespace, Secret) -> resources that read it
        self.period = period
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="authz-resync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            if self.relists.due():
                try:
                    self.sweep()
                except Exception:   # a failed sweep is tried at the next listing
                    log.exception("sweeping the watch cache's leftovers failed")

    def sweep(self) -> int:
        """One LIST per indexed kind and namespace the cache holds objects in; returns how
        many leftovers were hidden."""
        found = 0
        for kind, index in self.cache.indexes.items():
            by_namespace: dict[str, list[tuple[tuple[str, str], Any]]] = {}
            for key in values_of(index):
                for item in values(index, key):
                    by_namespace.setdefault(key[0], []).append((key, item))
            for namespace, items in sorted(by_namespace.items()):
                found += self._sweep(kind, namespace, items)
        return found

    def _sweep(self, kind: str, namespace: str,
               items: list[tuple[tuple[str, str], Any]]) -> int:
        listed, version = self.kube.list_metadata(
            kind, namespace, "" if kind == "Secret" else watch_selector(kind), watch_fields(kind))
        if kind == "Secret":
            views = [(key[1], v) for key, v in items if isinstance(v, SecretView)]
            secrets = leftovers(views, listed, version)
            for name, _view in secrets:
                self.cache.hide(kind, namespace, name, Gone(None, upto=version))
                for reader in self.readers(namespace, name):
                    self.wake(namespace, reader, f"Secret {name} is gone")
            return len(secrets)
        keyed = {id(obj): key for key, obj in items}
        gone = leftovers([obj for _, obj in items], listed, version)
        for obj in gone:
            name = str(obj["metadata"]["name"])
            log.info("%s/%s: %s %s was deleted while a watch was down", namespace,
                     keyed[id(obj)][1], kind, name)
            self.cache.hide(kind, namespace, name, Gone(str(obj["metadata"].get("uid")),
                                                       upto=version))
            owner = _owner(kind, keyed[id(obj)], obj)
            if owner:
                self.wake(namespace, owner, f"{kind} {name} is gone")
        return len(gone)


def values_of(index: Any) -> list[Any]:
    """A copy of an index's keys (cache.py, point 5)."""
    for _ in range(5):
        try:
            return list(index)
        except RuntimeError:
            continue
    return []
