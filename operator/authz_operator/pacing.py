"""A rollout's progress in status, written at most once per `PROGRESS_SECONDS` per resource.

During a rollout the Deployment's status changes with every pod that is created, scheduled
and becomes ready, and each change woke a reconcile that mirrored it into the resource's
status (`replicas`, `readyReplicas`, the READY column, the conditions' "1 of 2 replicas
available"): at 1,000 resources, a status patch every 0.6 s per resource at the median,
4.7 per resource in all, each an API write and a watch event kopf parses whole (issue 11).

What is paced is only such progress: a status that differs from the one written before
only in those counts and in the conditions that follow the Deployment's own (Available,
Progressing: "DeploymentMissing", then "Unknown" until the Deployment has a status, then
"MinimumReplicasUnavailable"), with no event to post. Written at once, as before: any event,
and any change of the phase, of the Ready condition's status or reason, of the conditions
there are, or of anything else in status (observedGeneration, what the lifecycle remembers).
A deferred write is never dropped: the resource is reconciled again when its interval is
over (`Later`), and that reconcile writes whatever is true then. So `kubectl get` is never
wrong about the phase and READY's readiness, and at most `PROGRESS_SECONDS` behind a
rollout's counts and details.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

PROGRESS_SECONDS = 2.0
# Status fields that only count progress (lifecycle.observe.replica_fields).
PROGRESS_FIELDS = frozenset({"replicas", "readyReplicas", "ready"})
Later = Callable[[str, str, float], bool]   # (namespace, name, delay): scheduled?


def progress_only(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether `new` differs from `old` only in progress (above). Pure."""
    keys = (set(old) | set(new)) - PROGRESS_FIELDS - {"conditions"}
    if any(old.get(key) != new.get(key) for key in keys):
        return False
    return _outline(old.get("conditions")) == _outline(new.get("conditions"))


def _outline(conditions: Any) -> tuple[list[Any], tuple[Any, Any] | None]:
    """The condition types there are, and the Ready condition's status and reason."""
    items = [c for c in conditions or [] if isinstance(c, Mapping)]
    ready = next(((c.get("status"), c.get("reason")) for c in items
                  if c.get("type") == "Ready"), None)
    return [c.get("type") for c in items], ready


class StatusPace:
    """When each resource's status was last written by this process, and whether a progress
    write must wait. Thread-safe: reconciles of different resources run in parallel."""

    def __init__(self, interval: float = PROGRESS_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.later: Later | None = None    # set once the wakeups exist (handlers.configure)
        self._lock = threading.Lock()
        self._written: dict[tuple[str, str], float] = {}

    def defer(self, namespace: str, name: str, old: Mapping[str, Any],
              new: Mapping[str, Any], events: Sequence[object]) -> bool:
        """True when this status write is progress that must wait: a reconcile of the
        resource is then scheduled for when it may be written. False: write it now."""
        if events or not progress_only(old, new):
            return False
        with self._lock:
            last = self._written.get((namespace, name))
        wait = 0.0 if last is None else last + self.interval - self.clock()
        if wait <= 0 or self.later is None:
            return False
        return self.later(namespace, name, wait)   # not scheduled (stopping): write now

    def wrote(self, namespace: str, name: str) -> None:
        with self._lock:
            self._written[namespace, name] = self.clock()

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._written.pop((namespace, name), None)
