"""What the watch cache keeps of a watched object: only what a reconcile reads. Pure.

The cache (`cache.py`) holds one entry per child, migration Job, serving pod and Secret of
every resource, for as long as the operator runs; whole objects would
make its memory grow with their managedFields (often larger than the rest of the object),
Job pod templates and pod specs that no reconcile reads. Who reads what:

- every object: `metadata` name, namespace, uid (delete preconditions, `controlled_by`),
  resourceVersion (read-your-writes), generation (`workload.rollout_state`), labels,
  annotations, ownerReferences (`diff.change`, `lifecycle.controlled_by`, the revision label
  of Jobs), deletionTimestamp (`lifecycle.selector`'s WAIT). Dropped: managedFields,
  creationTimestamp, finalizers, generateName, selfLink.
- a child (`CHILD_KINDS`): every top-level field but `status`, whole. `diff.change` compares
  the desired object (apiVersion, kind, metadata, and spec / data /
  automountServiceAccountToken, never status) as a subset of the live one: a field the
  builders set is never trimmed, so trimming cannot make drift appear or disappear
  (tests/unit/operator/test_trim.py checks it on API-server-shaped objects).
  Status: the Deployment's replica counts and conditions (`workload`,
  `lifecycle.observe`); the other children's status is read by nobody.
- a migration Job: status conditions and start / completion times (`workload.job_state`,
  `metrics.job_seconds`); its spec (a whole pod template) is read by nobody.
- a serving pod: its containers' images and the waiting / last-terminated state the crash
  report reads (`lifecycle.observe.crash_message`).
- a Secret: `SecretView` (its resourceVersion and key names), never a value.
- the AuthorizationService itself (`resource`): spec and status whole (`parse_spec`,
  `lifecycle.decide`), the metadata above but kopf's own annotations (its progress and a copy
  of the last-handled spec, `labels.KOPF_ANNOTATION_PREFIX`), which nothing of ours reads.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import orjson

from authz_operator import kinds
from authz_operator.labels import KOPF_ANNOTATION_PREFIX
from authz_operator.lifecycle.model import SecretView
from authz_operator.spec import GROUP, KIND

Obj = dict[str, Any]

META_KEPT = ("name", "namespace", "uid", "resourceVersion", "generation", "labels",
             "annotations", "ownerReferences", "deletionTimestamp")
DEPLOYMENT_STATUS = ("observedGeneration", "replicas", "updatedReplicas", "readyReplicas",
                     "availableReplicas", "unavailableReplicas")
CONDITION_KEPT = ("type", "status", "reason", "message")
JOB_CONDITION_KEPT = (*CONDITION_KEPT, "lastTransitionTime")
CHILD_KINDS = frozenset(c.kind.kind for c in kinds.CHILDREN)


def _pick(obj: Mapping[str, Any] | None, keys: tuple[str, ...]) -> Obj:
    obj = obj or {}
    return {k: obj[k] for k in keys if k in obj}


def metadata(obj: Mapping[str, Any]) -> Obj:
    return _pick(obj.get("metadata"), META_KEPT)


def _conditions(status: Mapping[str, Any], keys: tuple[str, ...]) -> list[Obj]:
    return [_pick(c, keys) for c in status.get("conditions") or []]


def child(obj: Mapping[str, Any]) -> Obj:
    """A child as `diff.change` and the lifecycle read it."""
    out: Obj = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    out["metadata"] = metadata(obj)
    status = obj.get("status") or {}
    if obj.get("kind") == "Deployment" and status:
        out["status"] = _pick(status, DEPLOYMENT_STATUS)
        if "conditions" in status:
            out["status"]["conditions"] = _conditions(status, CONDITION_KEPT)
    return out


def job(obj: Mapping[str, Any]) -> Obj:
    status = obj.get("status") or {}
    kept = _pick(status, ("startTime", "completionTime"))
    if "conditions" in status:
        kept["conditions"] = _conditions(status, JOB_CONDITION_KEPT)
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
            "metadata": metadata(obj), "status": kept}


def _container_status(cs: Mapping[str, Any]) -> Obj:
    out = _pick(cs, ("name", "image", "restartCount"))
    waiting = (cs.get("state") or {}).get("waiting")
    if waiting is not None:
        out["state"] = {"waiting": _pick(waiting, ("reason", "message"))}
    terminated = (cs.get("lastState") or {}).get("terminated")
    if terminated is not None:
        out["lastState"] = {"terminated": _pick(terminated, ("reason", "exitCode"))}
    return out


def pod(obj: Mapping[str, Any]) -> Obj:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return {
        "apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
        "metadata": metadata(obj),
        "spec": {"containers": [_pick(c, ("name", "image")) for c in spec.get("containers")
                                or []]},
        "status": {"containerStatuses": [_container_status(cs) for cs in
                                         status.get("containerStatuses") or []]},
    }


def secret_view(obj: Mapping[str, Any]) -> SecretView:
    """Only the Secret's version and key names, never its values."""
    keys = set((obj.get("data") or {}).keys()) | set((obj.get("stringData") or {}).keys())
    return SecretView(resource_version=str((obj.get("metadata") or {}).get("resourceVersion")),
                      keys=frozenset(str(k) for k in keys))


def resource(obj: Mapping[str, Any]) -> Obj:
    """The AuthorizationService as a reconcile reads it."""
    out: Obj = {k: obj[k] for k in ("apiVersion", "kind", "spec", "status") if k in obj}
    meta = metadata(obj)
    kopfs = f"{KOPF_ANNOTATION_PREFIX}/"
    if "annotations" in meta:
        meta["annotations"] = {k: v for k, v in meta["annotations"].items()
                               if not k.startswith(kopfs)}
    out["metadata"] = meta
    return out


TRIMS = {"Job": job, "Pod": pod, KIND: resource,
         **dict.fromkeys(CHILD_KINDS, child)}


def trimmed(obj: Mapping[str, Any]) -> Obj:
    """What the cache keeps of `obj`, by its kind. It shares its values with `obj`: `pack`
    it to keep it beside a body someone else holds."""
    return TRIMS[str(obj.get("kind"))](obj)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):    # kopf's views of a body
        return dict(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def pack(obj: Obj) -> bytes | Obj:
    """A trimmed object as the indexes keep it: its JSON in one block of bytes.

    At 1,000 resources the cache held some 8,000 trimmed objects as dicts: about 100,000
    small objects, written one event at a time among the short-lived ones each watch event is
    parsed into, so the freed memory around them could not go back to the system
    (issue 11). One block per object is a third of their size and lives outside Python's
    small-object arenas; a read (`unpack`) is a few microseconds, and a fresh copy that no
    other reader shares. What orjson cannot write exactly (an integer beyond 64 bits) is
    kept as a copy of the dict."""
    try:
        written = orjson.dumps(obj, default=_plain)
    except TypeError:
        return copy.deepcopy(obj)
    # orjson's bytes keep the whole buffer it wrote into (8 KiB for a 600-byte object):
    # a copy holds only the text.
    return bytes(memoryview(written))


def unpack(kept: Any) -> Any:
    """What `pack` kept, as the trimmed object (anything not packed as it is)."""
    return orjson.loads(kept) if isinstance(kept, bytes) else kept


# ---------------------------------------------------------------------------------------------
# whose it is


def controller_owner(obj: Mapping[str, Any]) -> str | None:
    """The name of the AuthorizationService that controls `obj`, if one does."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if (ref.get("controller") and ref.get("kind") == KIND
                and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/")):
            return str(ref["name"])
    return None


def orphaned(obj: Mapping[str, Any]) -> bool:
    """No controller owns it (a ReplicaSet of a Deployment deleted with its dependents kept)."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return not any(ref.get("controller") for ref in refs)


def resource_version(obj: Mapping[str, Any] | None) -> int | None:
    """The object's resourceVersion as a number, None when it has none or it is not one.

    The API documents resourceVersion as opaque; compared here only to tell which of two
    copies of one object is newer. Acceptable with kube-apiserver on etcd (every version is
    etcd's global modification revision, an increasing integer); with anything else the
    number is None and the cache trusts its watch (the behaviour of kopf's own indexes)."""
    value = ((obj or {}).get("metadata") or {}).get("resourceVersion")
    try:
        return int(str(value))
    except ValueError:
        return None
