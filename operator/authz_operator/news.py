"""Whether a child's watch event tells its resource's reconcile anything new.

A reconcile reads each child as `trim` keeps it. An event whose child, so trimmed, is the one
this process last knew (delivered before, or written by a reconcile) cannot change what a
reconcile decides, and need not wake one. At 200 resources each resource took ten
reconciles to become Ready, four of them woken by such events (issue 11): the echo of the
children its first reconcile created (the ServiceAccount's, then the others folded in), the
disruption controller's status writes to the PodDisruptionBudget (a status no reconcile
reads), a Job's status fields that the lifecycle does not read.

What counts as known from a write: only a written child whose trimmed form has no status.
For a ConfigMap, Service, ServiceAccount, PodDisruptionBudget, HPA or Ingress the trimmed form
never has one, and the write is a forced server-side apply of every field the reconcile
sets: the object it returns is the desired state, whatever else changed meanwhile. A
Deployment or Job is known from a write only when just created (empty status); after an
update the API server's answer can carry a status newer than the one the reconcile read,
which must still wake it.

A child the watch delivers as ADDED before the reconcile thread that created it has recorded
its write (the thread waits for the GIL while the event loop parses events: a third of the
creations at 1,000 resources) is news unless that write is recorded by the time its wake
would start a reconcile: `delivered` answers with that check, and `wakeups.py` asks it then.

Listings (`type` None) and deletions are always news; pods are not
tracked (their events are filtered by kind in handlers.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from authz_operator import trim
from authz_operator.workload import job_endings

Key = tuple[str, str, str]   # (kind, namespace, name)
Check = Callable[[], bool]   # asked later: True when the event turned out not to be news
TRACKED = frozenset({*trim.CHILD_KINDS, "Job"})


@dataclass(frozen=True, slots=True)
class Known:
    version: int | None   # resourceVersion, as trim.resource_version reads it
    digest: int           # of the trimmed object without its resourceVersion
    written: bool = False   # known from a reconcile's write, not (yet) from the watch


def _key(kind: str, obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return kind, str(meta.get("namespace")), str(meta.get("name"))


def digest(kind: str, trimmed: Mapping[str, Any]) -> int:
    """The trimmed object without its resourceVersion (every write changes that alone), nor
    its apiVersion and kind (a listed object may lack them). Of a Job's status only the
    condition that ended it counts: the lifecycle decides on that (`workload.job_state`);
    its start and completion times are read along with it (`metrics.job_seconds`), and the
    `Complete` that follows `SuccessCriteriaMet` changes nothing it decides."""
    meta = {k: v for k, v in (trimmed.get("metadata") or {}).items()
            if k != "resourceVersion"}
    rest = {k: v for k, v in trimmed.items() if k not in ("apiVersion", "kind", "metadata")}
    if kind == "Job" and "status" in rest:
        rest["status"] = job_endings(trimmed)[:1]
    return hash(orjson.dumps({**rest, "metadata": meta}, default=dict))


class LastKnown:
    """The last version of each tracked child this process knew. Called from the event loop
    (`delivered`) and from reconcile threads (`wrote`): one lock around single lookups."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[Key, Known] = {}

    def wrote(self, obj: Mapping[str, Any] | None) -> None:
        """A reconcile's apply returned `obj`."""
        kind = str((obj or {}).get("kind"))
        if not obj or kind not in TRACKED:
            return
        trimmed = trim.TRIMS[kind](obj)
        if trimmed.get("status"):
            return   # its status may be newer than what the reconcile read
        self._remember(_key(kind, obj),
                       Known(trim.resource_version(obj), digest(kind, trimmed), written=True))

    def delivered(self, type: str | None, kind: str, obj: Mapping[str, Any]) -> bool | Check:
        """The watch delivered `obj`, of `kind` (`type` as kopf gives it: None for a listed
        one, whose body may lack its kind). True when it is news, False when not; for a
        child added that this process has not recorded a write of, a check to ask when the
        wake fires: has a reconcile recorded writing this very version by then?"""
        if kind not in TRACKED:
            return True
        key = _key(kind, obj)
        if type == "DELETED":
            with self._lock:
                self._known.pop(key, None)
            return True
        new = Known(trim.resource_version(obj), digest(kind, trim.TRIMS[kind](obj)))
        old = self._remember(key, new)
        if type is None or (old is not None and old.digest != new.digest):
            return True
        if old is not None:
            return False
        if type != "ADDED" or new.version is None:
            return True
        return lambda: self._written(key, new.version)

    def _written(self, key: Key, version: int | None) -> bool:
        with self._lock:
            known = self._known.get(key)
        return known is not None and known.written and known.version == version

    def _remember(self, key: Key, new: Known) -> Known | None:
        """Keep `new` unless a newer version is known (a reconcile thread's write can be
        recorded after the watch delivered a later change); the same version delivered
        keeps the mark of its write. Returns what was known before."""
        with self._lock:
            old = self._known.get(key)
            if old is None or old.version is None or new.version is None \
                    or new.version > old.version:
                self._known[key] = new
            elif new.version == old.version:
                self._known[key] = Known(new.version, new.digest, old.written or new.written)
        return old

    def __len__(self) -> int:
        with self._lock:
            return len(self._known)
