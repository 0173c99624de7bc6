"""The lean storages give kopf's own essence of a resource, and kopf's own cleared essence,
without deep copies (diffbase.py)."""

from __future__ import annotations

import copy
from typing import Any, cast

import kopf
import pytest

from authz_operator.diffbase import LeanDiffBaseStorage, LeanProgressStorage, MemoryDiffBaseStorage
from authz_operator.labels import KOPF_ANNOTATION_PREFIX

KEY = "last-handled-configuration"


def body() -> dict[str, Any]:
    """An AuthorizationService as the API server sends it after a few reconciles."""
    return {
        "apiVersion": "rwadurian.io/v1alpha1", "kind": "AuthorizationService",
        "metadata": {
            "name": "svc", "namespace": "team", "uid": "u-1", "resourceVersion": "42",
            "generation": 3, "creationTimestamp": "2026-12-01T00:00:00Z",
            "labels": {"team": "a"},
            "annotations": {
                "note": "kept",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                f"{KOPF_ANNOTATION_PREFIX}/{KEY}": '{"spec":{"image":"old"}}\n',
                f"{KOPF_ANNOTATION_PREFIX}/reconcile": '{"started":"x"}',
            },
            "finalizers": [f"{KOPF_ANNOTATION_PREFIX}/finalizer"],
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"image": "registry.example/authz:1.4.0", "replicas": 2,
                 "env": [{"name": "A", "value": "1"}], "config": {"logLevel": "info"}},
        "status": {"phase": "Ready", "revisions": [{"revision": i} for i in range(10)],
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }


def as_body(raw: dict[str, Any]) -> kopf.Body:
    return kopf.Body(cast(kopf.RawBody, raw))


def storages() -> tuple[kopf.AnnotationsDiffBaseStorage, LeanDiffBaseStorage]:
    return (kopf.AnnotationsDiffBaseStorage(prefix=KOPF_ANNOTATION_PREFIX, key=KEY),
            LeanDiffBaseStorage(prefix=KOPF_ANNOTATION_PREFIX, key=KEY))


@pytest.mark.parametrize("change", [
    lambda b: None,
    lambda b: b["metadata"].pop("annotations"),
    lambda b: b["metadata"].pop("labels"),
    lambda b: b.pop("status"),
    lambda b: b.update(data={"x": [1, {"y": None}]}),   # any top-level field is essence
    lambda b: b["metadata"]["annotations"].update({     # another kopf operator's keys
        "other.example/kopf-managed": "yes", "other.example/last-handled-configuration": "{}",
        "kopf.zalando.org/touch": "x"}),
    lambda b: b["metadata"].update(labels={}, annotations={}),
    lambda b: b["spec"].update(huge=2**70, ratio=0.5, text="ünïcode \u2028"),   # not orjson's
])
def test_the_essence_is_kopfs(change: Any) -> None:
    raw = body()
    change(raw)
    kopfs, lean = storages()
    expected = kopfs.build(body=as_body(copy.deepcopy(raw)))
    assert lean.build(body=as_body(raw)) == expected
    assert "status" not in expected


def test_the_essence_is_a_copy_the_body_does_not_change_later() -> None:
    raw = body()
    essence: Any = storages()[1].build(body=as_body(raw))
    raw["spec"]["env"][0]["value"] = "2"
    raw["metadata"]["labels"]["team"] = "b"
    assert essence["spec"]["env"][0]["value"] == "1"
    assert essence["metadata"]["labels"] == {"team": "a"}


def test_extra_fields_are_read_from_the_whole_body() -> None:
    raw = body()
    kopfs, lean = storages()
    fields = ["status.phase"]
    assert lean.build(body=as_body(raw), extra_fields=fields) == \
        kopfs.build(body=as_body(raw), extra_fields=fields)
    assert lean.build(body=as_body(raw), extra_fields=fields)["status"] == {"phase": "Ready"}


@pytest.mark.parametrize("change", [
    lambda e: None,
    lambda e: e["metadata"]["annotations"].clear(),
    lambda e: e.pop("metadata"),
    lambda e: e["metadata"]["annotations"].update({"note": "kept"}),
    lambda e: e["spec"].update(huge=2**70),
])
def test_the_cleared_essence_is_kopfs(change: Any) -> None:
    essence: Any = {"spec": body()["spec"], "metadata": {
        "labels": {"team": "a"},
        "annotations": {f"{KOPF_ANNOTATION_PREFIX}/reconcile": '{"started":"x"}',
                        f"{KOPF_ANNOTATION_PREFIX}/other": "y", "note": "n"}}}
    change(essence)
    kopfs = kopf.AnnotationsProgressStorage(prefix=KOPF_ANNOTATION_PREFIX)
    lean = LeanProgressStorage(prefix=KOPF_ANNOTATION_PREFIX)
    expected = kopfs.clear(essence=copy.deepcopy(essence))
    cleared: Any = lean.clear(essence=essence)
    assert cleared == expected
    cleared["spec"]["env"][0]["value"] = "changed"   # a copy: the input stays as it was
    assert essence["spec"]["env"][0]["value"] == "1"


def memory_storage() -> MemoryDiffBaseStorage:
    return MemoryDiffBaseStorage(prefix=KOPF_ANNOTATION_PREFIX, key=KEY)


def test_the_last_handled_essence_is_kept_in_memory_and_never_patched() -> None:
    storage, raw = memory_storage(), body()
    assert storage.fetch(body=as_body(raw)) is None   # an annotation from before is ignored
    essence = storage.build(body=as_body(raw))
    patch = kopf.Patch()
    storage.store(body=as_body(raw), patch=patch, essence=essence)
    assert not patch   # kopf sends no request for an empty patch
    assert storage.fetch(body=as_body(raw)) == essence
    other = body()
    other["metadata"]["uid"] = "u-2"   # the same name created again is a new resource
    assert storage.fetch(body=as_body(other)) is None


def test_kopf_finds_a_spec_change_against_the_remembered_essence() -> None:
    storage, raw = memory_storage(), body()
    storage.store(body=as_body(raw), patch=kopf.Patch(), essence=storage.build(body=as_body(raw)))
    status_only = body()
    status_only["status"]["phase"] = "RollingOut"
    changed = body()
    changed["spec"]["replicas"] = 3
    for new, differs in ((status_only, False), (changed, True)):
        old = storage.fetch(body=as_body(new))
        assert (old != storage.build(body=as_body(new))) is differs


def test_only_kinds_with_change_handlers_get_an_essence() -> None:
    storage = MemoryDiffBaseStorage(prefix=KOPF_ANNOTATION_PREFIX, key=KEY,
                                    changing={("rwadurian.io", "AuthorizationService")})
    ours = body()
    assert storage.build(body=as_body(ours)) == memory_storage().build(body=as_body(ours))
    deployment = {**body(), "apiVersion": "apps/v1", "kind": "Deployment"}
    same_kind_other_group = {**body(), "apiVersion": "other.example/v1"}
    pod = {**body(), "apiVersion": "v1", "kind": "Pod"}   # the core group: ""
    for other in (deployment, same_kind_other_group, pod):
        assert storage.build(body=as_body(other)) == {}
    unsaid = body()
    del unsaid["kind"]   # a body that does not say its kind gets kopf's essence
    assert storage.build(body=as_body(unsaid)) == memory_storage().build(body=as_body(unsaid))
    assert storage.build(body=as_body(pod), extra_fields=["status.phase"]) != {}


def test_a_deleted_resource_is_forgotten() -> None:
    storage, raw = memory_storage(), body()
    storage.store(body=as_body(raw), patch=kopf.Patch(), essence=storage.build(body=as_body(raw)))
    assert len(storage) == 1
    storage.forget("u-1")
    storage.forget("u-1")   # a second DELETED event (a relist) is harmless
    assert len(storage) == 0
    assert storage.fetch(body=as_body(raw)) is None


def handled_once(storage: kopf.AnnotationsProgressStorage, raw: dict[str, Any]) -> kopf.Patch:
    """The patch of one handler run as kopf makes it: its progress stored, then purged."""
    patch = kopf.Patch()
    record = cast(kopf.ProgressRecord, {"started": "2026-12-05T00:00:00", "success": True})
    storage.store(key=kopf.HandlerId("reconcile"), record=record, body=as_body(raw), patch=patch)
    storage.purge(key=kopf.HandlerId("reconcile"), body=as_body(raw), patch=patch)
    return patch


def test_a_handler_that_succeeds_at_once_writes_nothing() -> None:
    raw = body()
    raw["metadata"]["annotations"] = {"note": "kept"}
    kopfs = kopf.AnnotationsProgressStorage(prefix=KOPF_ANNOTATION_PREFIX)
    assert handled_once(kopfs, raw) == {   # kopf's own: a write for its mark alone
        "metadata": {"annotations": {f"{KOPF_ANNOTATION_PREFIX}/kopf-managed": "yes"}}}
    assert not handled_once(LeanProgressStorage(prefix=KOPF_ANNOTATION_PREFIX), raw)


def test_the_mark_is_written_with_progress_that_is_written() -> None:
    raw = body()   # a retried handler's record is on the resource: the purge removes it
    raw["metadata"]["annotations"] = {"note": "kept"}
    kopfs = kopf.AnnotationsProgressStorage(prefix=KOPF_ANNOTATION_PREFIX)
    lean = LeanProgressStorage(prefix=KOPF_ANNOTATION_PREFIX)
    raw["metadata"]["annotations"][f"{KOPF_ANNOTATION_PREFIX}/reconcile"] = '{"retries":1}'
    expected = handled_once(kopfs, raw)
    assert expected["metadata"]["annotations"] == {
        f"{KOPF_ANNOTATION_PREFIX}/reconcile": None,
        f"{KOPF_ANNOTATION_PREFIX}/kopf-managed": "yes"}
    assert handled_once(lean, raw) == expected
