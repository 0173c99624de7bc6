"""kopf's per-event bookkeeping of a resource, without deep copies.

For every watch event of every AuthorizationService (and our status patches are most of
them), kopf works out whether its spec changed (create, update, resume): it builds the
resource's "essence" (`DiffBaseStorage.build`: the body without metadata and status, plus
labels and annotations), and strips its own progress annotations from the new essence and
from the last-handled one (`ProgressStorage.clear`). Each step starts with `copy.deepcopy`,
three deep copies of the spec per event; `build` copied the status and managedFields too,
only to throw them away. At 1,000 resources the copies were a tenth of the operator's CPU
time (py-spy, issue 11), and after the first change below still 8% of its busy time.

- `LeanDiffBaseStorage.build` takes only what the essence keeps and copies it as JSON
  (orjson, about ten times faster than `deepcopy` for the same values), then filters the
  annotations with kopf's own helpers;
- `LeanProgressStorage.clear` is kopf's `clear` on a JSON copy.

Both give kopf's result, field for field (tests/unit/operator/test_diffbase.py compares them
with kopf's own classes). Whatever orjson cannot copy exactly (an integer beyond 64 bits) and
any handler that asks for extra fields or ignored fields take kopf's own path.

`MemoryDiffBaseStorage` keeps the last-handled essence in memory instead of the annotation
kopf patches onto the resource after each handled change. That patch was one more write of
the whole resource per create and per spec change, and the API server's work for a write
grows with the object (7-9 ms of its CPU for the sample resource on the benchmark machine,
against 0.7 ms for an Event; issue 11), plus its watch event back to us. What kopf loses is
only the memory across a restart: a resource it has not handled in this process is a
creation to it rather than a resumption, and both run the same level-based reconcile.
`LeanProgressStorage.purge` drops the one annotation kopf still added on its own (its mark,
below): a reconcile that succeeds leaves the resource as it was.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, cast

import kopf
import orjson

# What the essence keeps of the metadata (kopf's DiffBaseStorage.build).
METADATA_KEPT = ("labels", "annotations")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
MARKER = "kopf-managed"   # kopf's mark of a kopf operator's annotation prefix


def json_copy(value: Any) -> Any:
    """A deep copy of a JSON value (what a watch event is parsed into)."""
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError:   # orjson.JSONEncodeError: not plain JSON; copy it the slow way
        return copy.deepcopy(value)


class LeanDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    def build(self, *, body: kopf.Body,
              extra_fields: Iterable[kopf.FieldSpec] | None = None) -> kopf.BodyEssence:
        fields = list(extra_fields or [])
        if fields or self.ignored_fields:
            return super().build(body=body, extra_fields=fields)
        meta: Mapping[str, Any] = body.get("metadata") or {}
        lean: dict[str, Any] = {k: v for k, v in body.items()
                                if k not in ("apiVersion", "kind", "metadata", "status")}
        kept = {k: meta[k] for k in METADATA_KEPT if k in meta}
        if kept:
            lean["metadata"] = kept
        essence = cast(dict[str, Any], json_copy(lean))
        annotations = essence.get("metadata", {}).get("annotations", {})
        ignored = self._detect_marked_prefixes(annotations)   # other kopf operators' keys
        for key in list(annotations):
            if key == LAST_APPLIED or any(key.startswith(f"{p}/") for p in ignored):
                del annotations[key]
        result = cast(kopf.BodyEssence, essence)
        self.remove_annotations(result, set(self.make_keys(self.key, body=body)))   # its own
        self.remove_empty_stanzas(result)
        return result


class LeanProgressStorage(kopf.AnnotationsProgressStorage):
    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        copied = cast(kopf.BodyEssence, json_copy(essence))
        annotations = copied.get("metadata", {}).get("annotations", {})
        ours = {key for key in annotations if self.prefix and key.startswith(f"{self.prefix}/")}
        self.remove_annotations(copied, ours)
        self.remove_empty_stanzas(copied)
        return copied

    def purge(self, *, key: kopf.HandlerId, body: kopf.Body, patch: kopf.Patch) -> None:
        """kopf's purge, without a lone mark: when kopf stores a handler's progress it also
        marks the resource as kopf's (`<prefix>/kopf-managed`, for other kopf operators to
        skip our keys), and the mark stays in the patch when the same cycle purges the
        record again, as after every handler that succeeds at once. That was a write of the
        whole resource per creation for one annotation. The mark is still written with
        any progress of ours that is written (a handler retried)."""
        super().purge(key=key, body=body, patch=patch)
        marker = f"{self.prefix}/{MARKER}"
        annotations = patch.get("metadata", {}).get("annotations", {})
        if marker in annotations and not any(
                k != marker and k.startswith(f"{self.prefix}/") for k in annotations):
            lean = cast(kopf.BodyEssence, patch)
            self.remove_annotations(lean, {marker})
            self.remove_empty_stanzas(lean)


class MemoryDiffBaseStorage(LeanDiffBaseStorage):
    """The last-handled essence of each resource in this process, by uid: kopf finds a change
    of spec, labels or annotations as before, without writing anything to the resource.

    An annotation an older operator wrote stays on the resource and is ignored (`build`
    strips it like kopf's own). `forget` drops a deleted resource's entry; one whose DELETED
    event was missed keeps an entry of about the size of its spec until the process ends.

    `changing`: the (API group, kind) pairs that have change handlers. kopf builds an essence
    for every event of every watched kind and diffs it with the stored one
    (`_detect_causes`), also for kinds no change handler serves, where nothing reads it: a
    JSON copy of a pod's or a Deployment's spec per event, thrown away (6.6% of the
    operator's busy time at 200 resources, py-spy, issue 11). Any other kind gets the empty
    essence; a body that does not say its kind gets kopf's."""

    def __init__(self, *, prefix: str, key: str,
                 changing: Iterable[tuple[str, str]] | None = None) -> None:
        super().__init__(prefix=prefix, key=key)
        self._handled: dict[str, kopf.BodyEssence] = {}
        self._changing = None if changing is None else frozenset(changing)

    def build(self, *, body: kopf.Body,
              extra_fields: Iterable[kopf.FieldSpec] | None = None) -> kopf.BodyEssence:
        if self._changing is not None and not extra_fields:
            api_version, kind = body.get("apiVersion"), body.get("kind")
            if api_version and kind and (
                    str(api_version).rpartition("/")[0], str(kind)) not in self._changing:
                return cast(kopf.BodyEssence, {})
        return super().build(body=body, extra_fields=extra_fields)

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        uid = body.metadata.uid
        return self._handled.get(uid) if uid else None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        uid = body.metadata.uid
        if uid:
            self._handled[uid] = essence

    def forget(self, uid: str) -> None:
        self._handled.pop(uid, None)

    def __len__(self) -> int:
        return len(self._handled)
