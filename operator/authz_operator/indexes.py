"""kopf indexes: what `cache.WatchCache` reads, kept by the watches kopf runs anyway.

One index per kind, each value trimmed and packed (`trim.pack`; `cache.values` unpacks it);
keys:
- an AuthorizationService: (namespace, name), every one kopf serves (a reconcile reads its
  resource here, not by a GET each time);
- a child (`kinds.CHILDREN`): (namespace, name), for children an AuthorizationService
  controls, by owner reference (kopf watches only objects with our managed-by label:
  `handlers.SELECTED_KINDS`; one whose label was removed leaves the index, and the GET that
  guards its create finds it);
- a migration Job: (namespace, owner name), for Jobs an AuthorizationService controls;
- a serving pod: (namespace, instance label), for running pods with the serving labels (the
  watch's field selector: `labels.watch_fields`);
- a Secret: (namespace, name) -> `SecretView`, for every Secret in the watched namespaces
  (a resource may start to reference a Secret that has not changed since: it must be known
  already). kopf watches every Secret for `handlers.secret_changed` anyway.

No ReplicaSets: a reconcile lists them in the rare case an orphan matters (`cache.py`).

The functions are `async`: kopf runs them on its event loop, no thread each (kopf runs sync
functions in its executor), and they only copy a few fields. Each returns {} rather than
None when the object is not one to keep: None would keep its earlier values
(docs/indexing.rst, "Conditional indexing").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from authz_operator import kinds, trim
from authz_operator.kinds import Kind
from authz_operator.labels import LABEL_INSTANCE, SERVING_PODS

IndexKey = tuple[str, str]
INDEX_IDS: dict[str, str] = {
    k.kind: f"authz_{k.plural}"
    for k in (kinds.RESOURCE, *(c.kind for c in kinds.CHILDREN), kinds.JOB, kinds.POD,
              kinds.SECRET)}


def _where(body: Mapping[str, Any]) -> tuple[str, str, Mapping[str, str]]:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name")), meta.get("labels") or {}


def resource_entry(body: Mapping[str, Any]) -> dict[IndexKey, Any]:
    namespace, name, _ = _where(body)
    return {(namespace, name): trim.pack(trim.resource(body))}


def child_entry(body: Mapping[str, Any]) -> dict[IndexKey, Any]:
    namespace, name, _ = _where(body)
    if trim.controller_owner(body) is None:
        return {}
    return {(namespace, name): trim.pack(trim.child(body))}


def job_entry(body: Mapping[str, Any]) -> dict[IndexKey, Any]:
    namespace, _, _ = _where(body)
    owner = trim.controller_owner(body)
    return {} if owner is None else {(namespace, owner): trim.pack(trim.job(body))}


def pod_entry(body: Mapping[str, Any]) -> dict[IndexKey, Any]:
    namespace, _, labels = _where(body)
    instance = labels.get(LABEL_INSTANCE)
    if not instance or not SERVING_PODS.items() <= dict(labels).items():
        return {}
    return {(namespace, instance): trim.pack(trim.pod(body))}


def secret_entry(body: Mapping[str, Any]) -> dict[IndexKey, Any]:
    namespace, name, _ = _where(body)
    return {(namespace, name): trim.secret_view(body)}


def _register(kind: Kind, entry: Any, labels: Mapping[str, str] | None = None) -> None:
    async def index(body: kopf.Body, **_: Any) -> dict[IndexKey, Any]:
        raw = dict(body)   # listed items carry their kind only as kopf fills it in: be sure
        raw.setdefault("kind", kind.kind)
        raw.setdefault("apiVersion", kind.api_version)
        return dict(entry(raw))

    kopf.index(kind.group, kind.version, kind.plural, id=INDEX_IDS[kind.kind],
               labels=dict(labels) if labels else None)(index)


_register(kinds.RESOURCE, resource_entry)
for _child in kinds.CHILDREN:
    _register(_child.kind, child_entry)
_register(kinds.JOB, job_entry)
_register(kinds.POD, pod_entry, SERVING_PODS)
_register(kinds.SECRET, secret_entry)


def from_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The indexes by kind, from a handler's kwargs (kopf passes each under its id)."""
    return {kind: kwargs[index_id] for kind, index_id in INDEX_IDS.items()}
