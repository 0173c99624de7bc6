"""The watch cache keeps trimmed objects (trim.py): every reader must give the same answer on
the trimmed object as on the whole one the API server returns, above all `diff.change`
(a false drift would write on every reconcile; a hidden one would never be restored)."""

from __future__ import annotations

import copy
import datetime
import json
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import orjson
import pytest

from authz_operator import lifecycle as lc
from authz_operator import metrics, trim
from authz_operator import resources as r
from authz_operator.diff import change
from authz_operator.lifecycle.observe import (
    crash_message,
    deployment_available,
    live_target,
    replica_fields,
)
from authz_operator.lifecycle.selector import orphaned_replica_sets
from authz_operator.spec import parse_spec
from authz_operator.workload import job_state, rollout_state

from .samples import OWNER, spec_body

Obj = dict[str, Any]
T = TypeVar("T")
SPECS = {
    "seed": spec_body(),
    "no autoscaling, no ingress": spec_body(autoscaling={"enabled": False}, replicas=3,
                                            ingress={"enabled": False}),
    "ingress annotations, pull secrets": spec_body(
        ingress={"enabled": True, "host": "a.example", "annotations": {"x.io/a": "1"}},
        imagePullSecrets=["registry-credentials"]),
}
NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def fields_v1(obj: Any) -> Any:
    """managedFields' shape: every key as `f:key`, list items as `k:`/`i:` entries."""
    if isinstance(obj, dict):
        return {f"f:{k}": fields_v1(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return {f"i:{n}": fields_v1(v) for n, v in enumerate(obj)} | {".": {}}
    return {}


def served(obj: Obj, rv: str = "4711") -> Obj:
    """`obj` as kube-apiserver returns it after our apply: identity, defaults, managedFields
    of two managers, a status, the kinds' own annotations."""
    out = copy.deepcopy(obj)
    meta = out["metadata"]
    meta.update(uid=f"uid-{obj['kind']}", resourceVersion=rv, generation=3,
                creationTimestamp="2026-01-02T03:00:00Z")
    meta["managedFields"] = [
        {"manager": r.FIELD_MANAGER, "operation": "Apply", "apiVersion": obj["apiVersion"],
         "time": "2026-01-02T03:00:00Z", "fieldsType": "FieldsV1",
         "fieldsV1": fields_v1({k: v for k, v in obj.items() if k not in ("apiVersion", "kind")})},
        {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
         "apiVersion": obj["apiVersion"], "time": "2026-01-02T03:01:00Z",
         "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:replicas": {}}}}]
    kind = obj["kind"]
    if kind == "Deployment":
        meta["annotations"]["deployment.kubernetes.io/revision"] = "2"
        spec = out["spec"]
        spec.setdefault("replicas", 2)
        pod = spec["template"]["spec"]
        pod.update(dnsPolicy="ClusterFirst", restartPolicy="Always",
                   schedulerName="default-scheduler")
        for c in pod["containers"]:
            c.update(terminationMessagePath="/dev/termination-log",
                     terminationMessagePolicy="File")
            for probe in ("readinessProbe", "livenessProbe"):
                c[probe]["successThreshold"] = 1
                c[probe]["httpGet"]["scheme"] = "HTTP"
        out["status"] = {
            "observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
            "availableReplicas": 2, "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                 "message": "Deployment has minimum availability.",
                 "lastUpdateTime": "2026-01-02T03:01:00Z",
                 "lastTransitionTime": "2026-01-02T03:01:00Z"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                 "message": "ReplicaSet has successfully progressed.",
                 "lastUpdateTime": "2026-01-02T03:01:00Z",
                 "lastTransitionTime": "2026-01-02T03:00:00Z"}]}
    elif kind == "Service":
        out["spec"].update(clusterIP="10.96.0.17", clusterIPs=["10.96.0.17"],
                           ipFamilies=["IPv4"], ipFamilyPolicy="SingleStack",
                           sessionAffinity="None", internalTrafficPolicy="Cluster")
        out["status"] = {"loadBalancer": {}}
    elif kind == "HorizontalPodAutoscaler":
        out["status"] = {"currentReplicas": 2, "desiredReplicas": 2, "conditions": [
            {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}]}
    elif kind == "PodDisruptionBudget":
        out["status"] = {"currentHealthy": 2, "desiredHealthy": 1, "disruptionsAllowed": 1,
                         "expectedPods": 2, "observedGeneration": 3}
    elif kind == "Ingress":
        out["status"] = {"loadBalancer": {"ingress": [{"ip": "10.0.0.9"}]}}
    return out


def desired_children() -> Iterator[tuple[str, Obj]]:
    for variant, body in SPECS.items():
        spec = parse_spec(body)
        target = r.target_from_spec(spec, {"authorization-secrets": "41"})
        for kind, obj in r.desired_children(spec, OWNER, target).items():
            if obj is not None:
                yield f"{variant}: {kind}", obj


CHILDREN = list(desired_children())


def leaves(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            yield from leaves(v, (*path, k))
    elif isinstance(obj, list) and obj:
        for n, v in enumerate(obj):
            yield from leaves(v, (*path, n))
    else:
        yield path


def _parent(obj: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        obj = obj[step]
    return obj


def changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "-changed"
    return {"someone": "else"}


def mutations(desired: Obj) -> Iterator[tuple[str, Obj]]:
    """The live object with each field we set changed, then removed; and with what others
    add (a label, an annotation, a list item)."""
    base = served(desired)
    for path in leaves(desired):
        if path[:1] in (("apiVersion",), ("kind",)) or path[-1:] in (("name",), ("namespace",)):
            continue
        live = copy.deepcopy(base)
        parent = _parent(live, path)
        parent[path[-1]] = changed(parent[path[-1]])
        yield f"changed {path}", live
        live = copy.deepcopy(base)
        parent = _parent(live, path)
        if isinstance(parent, dict):
            del parent[path[-1]]
            yield f"removed {path}", live
    live = copy.deepcopy(base)
    live["metadata"]["labels"]["example.com/team"] = "a"
    live["metadata"]["annotations"]["example.com/note"] = "hello"
    yield "others' label and annotation", live
    for path in leaves(desired):
        parent = _parent(base, path)
        if isinstance(parent, list):
            live = copy.deepcopy(base)
            _parent(live, path).append(copy.deepcopy(parent[-1]))
            yield f"an item added to {path[:-1]}", live


@pytest.mark.parametrize(("case", "desired"), CHILDREN, ids=[c for c, _ in CHILDREN])
def test_trimming_a_child_never_changes_what_diff_says(case: str, desired: Obj) -> None:
    assert change(desired, trim.child(served(desired))) is None
    assert change(desired, served(desired)) is None
    seen = 0
    for what, live in mutations(desired):
        assert change(desired, trim.child(live)) == change(desired, live), what
        seen += 1
    assert seen > 10


def test_the_trimmed_deployment_is_a_fraction_of_the_served_one() -> None:
    [desired] = [o for c, o in CHILDREN if c == "seed: Deployment"]
    full, kept = served(desired), trim.child(served(desired))
    assert "managedFields" not in kept["metadata"]
    assert len(json.dumps(kept)) < 0.6 * len(json.dumps(full))


def test_a_packed_object_reads_back_as_trimmed_and_each_read_is_a_copy_of_its_own() -> None:
    """The indexes keep each trimmed object as one block of JSON (`trim.pack`)."""
    for case, desired in CHILDREN:
        full = served(desired)
        before = copy.deepcopy(full)
        kept = trim.pack(trim.trimmed(full))
        assert full == before, case                   # trimming shares, never changes
        assert isinstance(kept, bytes), case
        first, second = trim.unpack(kept), trim.unpack(kept)
        assert first == second == trim.trimmed(full), case
        first["metadata"]["labels"]["x"] = "changed by a reader"
        assert trim.unpack(kept) == second, case


def _allocated(make: Callable[[], T]) -> tuple[T, int]:
    """What `make` returns, and the memory it holds (tracemalloc: `sys.getsizeof` counts only
    a bytes object's length, not the block allocated for it)."""
    tracemalloc.start()
    try:
        made = make()
        size = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return made, size


def test_a_packed_object_holds_only_its_text() -> None:
    """orjson's own bytes would keep the whole buffer it wrote into (several times the text)."""
    [desired] = [o for c, o in CHILDREN if c == "seed: ConfigMap"]
    trimmed = trim.child(served(desired))
    kept, size = _allocated(lambda: cast(bytes, trim.pack(trimmed)))
    assert isinstance(kept, bytes)
    assert size < len(kept) + 256
    _, orjsons = _allocated(lambda: orjson.dumps(trimmed))
    assert orjsons > 2 * len(kept)     # what the copy is for


def test_the_packed_children_are_a_third_of_the_trimmed_dicts() -> None:
    """Measured (tracemalloc): the seed's children parsed from JSON as a watch event is, as
    dicts and as packed bytes (issue 11)."""
    texts = [json.dumps(served(o)) for c, o in CHILDREN if c.startswith("seed:")]

    def held(keep: Callable[[Obj], Any]) -> int:
        kept, size = _allocated(
            lambda: [[keep(trim.trimmed(json.loads(t))) for t in texts] for _ in range(20)])
        assert len(kept) == 20
        return size

    assert held(trim.pack) < held(lambda o: o) / 3


def test_what_orjson_cannot_write_exactly_is_kept_as_a_copy() -> None:
    obj = {"kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"n": 2**70}}
    kept = trim.pack(obj)
    assert kept == obj
    assert kept is not obj
    assert trim.unpack(kept) == obj


def test_the_deployment_readers_agree_on_the_trimmed_deployment() -> None:
    [desired] = [o for c, o in CHILDREN if c == "seed: Deployment"]
    spec = parse_spec(SPECS["seed"])
    for status in ({}, {"replicas": 3, "updatedReplicas": 1, "unavailableReplicas": 2},
                   {"conditions": [{"type": "Progressing", "status": "False",
                                    "reason": "ProgressDeadlineExceeded", "message": "late",
                                    "lastUpdateTime": "t"}]}):
        full = served(desired)
        full["status"].update(status)
        full["metadata"]["deletionTimestamp"] = "2026-01-02T03:04:05Z"
        kept = trim.child(full)
        assert deployment_available(kept) == deployment_available(full)
        assert rollout_state(kept, 2) == rollout_state(full, 2)
        assert replica_fields(spec, kept, OWNER.name) == replica_fields(spec, full, OWNER.name)
        assert live_target(kept) == live_target(full)
        assert kept["metadata"]["deletionTimestamp"] == full["metadata"]["deletionTimestamp"]
        assert lc.controlled_by(kept, OWNER)
        assert lc.controlled_by(full, OWNER)


def job(conditions: list[Obj], rv: str = "10") -> Obj:
    spec = parse_spec(SPECS["seed"])
    desired = r.desired_migration_job(spec, OWNER, r.target_from_spec(spec, {}), 3)
    out = served(desired, rv)
    out["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/controller-uid"] = "j"
    out["status"] = {"startTime": "2026-01-02T03:00:00Z", "active": 0, "ready": 0,
                     "uncountedTerminatedPods": {}, "conditions": conditions}
    return out


@pytest.mark.parametrize("conditions", [
    [],
    [{"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
      "lastProbeTime": "x", "lastTransitionTime": "2026-01-02T03:00:09Z"},
     {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-02T03:00:10Z"}],
    [{"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
      "message": "Job has reached the specified backoff limit",
      "lastTransitionTime": "2026-01-02T03:00:30Z"}],
])
def test_the_job_readers_agree_on_the_trimmed_job(conditions: list[Obj]) -> None:
    full = job(conditions)
    kept = trim.job(full)
    assert "spec" not in kept
    assert job_state(kept) == job_state(full)
    assert metrics.job_seconds(kept) == metrics.job_seconds(full)
    assert kept["metadata"]["labels"] == full["metadata"]["labels"]
    assert lc.controlled_by(kept, OWNER)
    old = {"migration": {"job": "x", "phase": "Running"}}
    new = {"migration": {"job": full["metadata"]["name"], "phase": "Succeeded"}}
    assert metrics.finished_migration(old, new, {full["metadata"]["name"]: kept}) == \
        metrics.finished_migration(old, new, {full["metadata"]["name"]: full})


def pod(name: str, image: str, crashing: bool) -> Obj:
    state: Obj = {"running": {"startedAt": "2026-01-02T03:00:00Z"}}
    last: Obj = {}
    if crashing:
        state = {"waiting": {"reason": "CrashLoopBackOff",
                             "message": "back-off 10s restarting failed container"}}
        last = {"terminated": {"reason": "OOMKilled", "exitCode": 137, "message": "x" * 900,
                               "startedAt": "t", "finishedAt": "t", "containerID": "c"}}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": OWNER.namespace, "uid": f"uid-{name}",
                     "resourceVersion": "12", "labels": r.pod_labels(OWNER.name, image,
                                                                     r.Component.SERVER),
                     "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}],
                     "ownerReferences": [{"kind": "ReplicaSet", "name": "rs", "uid": "rs",
                                          "controller": True}]},
        "spec": {"containers": [{"name": r.CONTAINER, "image": image, "env": [{"name": "A"}],
                                 "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}],
                 "nodeName": "node-1", "volumes": [{"name": "tmp", "emptyDir": {}}]},
        "status": {"phase": "Running", "podIP": "10.1.0.4", "containerStatuses": [{
            "name": r.CONTAINER, "image": image, "imageID": "sha", "ready": not crashing,
            "restartCount": 3 if crashing else 0, "started": True, "state": state,
            "lastState": last}]},
    }


def test_the_crash_report_is_the_same_from_trimmed_pods() -> None:
    image = "registry.example/authorization-service:1.5.0"
    pods = [pod("a", image, crashing=False), pod("b", image, crashing=True)]
    kept = [trim.pod(p) for p in pods]
    assert crash_message(kept, image) == crash_message(pods, image) is not None
    assert crash_message(kept, "other") == crash_message(pods, "other") is None
    assert len(json.dumps(kept)) < 0.5 * len(json.dumps(pods))


def test_a_replica_set_is_orphaned_without_a_controller_and_found_by_labels() -> None:
    def rs(name: str, owned: bool, labelled: bool) -> Obj:
        labels = {**r.selector_labels(OWNER.name), "app.kubernetes.io/managed-by": r.MANAGED_BY,
                  "pod-template-hash": name}
        if labelled:
            labels[r.LABEL_COMPONENT] = "server"
        return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": name, "uid": name, "resourceVersion": "3", "labels": labels,
                             "ownerReferences": [{"kind": "Deployment", "controller": True}]
                             if owned else [], "managedFields": [{"manager": "x"}]},
                "spec": {"replicas": 2, "template": {"spec": {"containers": []}}},
                "status": {"replicas": 2, "readyReplicas": 2}}
    full = [rs("a", False, True), rs("b", False, False), rs("c", True, True)]
    assert [x["metadata"]["name"] for x in orphaned_replica_sets(full, OWNER)] == ["a", "b"]
    assert [trim.orphaned(x) for x in full] == [True, True, False]
    assert "ReplicaSet" not in trim.TRIMS   # listed when wanted, never cached


def test_a_secret_leaves_only_its_version_and_key_names() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "s", "namespace": "ns", "resourceVersion": "77"},
              "data": {"jwt-secret": "czNjcjN0"}, "stringData": {"database-url": "postgres://"}}
    view = trim.secret_view(secret)
    assert view == lc.SecretView("77", frozenset({"jwt-secret", "database-url"}))
    assert "czNjcjN0" not in repr(view)
    assert "postgres" not in repr(view)


def test_resource_versions_compare_as_numbers_or_not_at_all() -> None:
    assert trim.resource_version({"metadata": {"resourceVersion": "10"}}) == 10
    assert trim.resource_version({"metadata": {"resourceVersion": "opaque-1"}}) is None
    assert trim.resource_version({"metadata": {}}) is None
    assert trim.resource_version(None) is None


def test_decide_gives_the_same_plan_on_trimmed_children() -> None:
    spec_raw = SPECS["seed"]
    spec = parse_spec(spec_raw)
    secrets = {"authorization-secrets": lc.SecretView("41", frozenset({"database-url",
                                                                        "jwt-secret"}))}
    target = r.target_from_spec(spec, {"authorization-secrets": "41"})
    desired = r.desired_children(spec, OWNER, target)
    full = {k: served(v) for k, v in desired.items() if v is not None}
    full["Service"]["spec"]["ports"].append({"name": "debug", "port": 9, "protocol": "TCP"})
    full["Deployment"]["status"].update(updatedReplicas=1, unavailableReplicas=1)
    jobs = {j["metadata"]["name"]: j for j in [job([{"type": "Complete", "status": "True"}])]}
    pods = [pod("b", "registry.example/authorization-service:1.4.0", crashing=True)]
    status = {"database": {"schemaVersion": "0003", "image": spec.image}}

    def observed(children: Any, jobs: Any, pods: Any) -> lc.Observed:
        return lc.Observed(owner=OWNER, generation=1, spec=spec, status=status,
                           annotations={}, children=children, secrets=secrets, jobs=jobs,
                           job_results={}, now=NOW, pods=pods)

    whole = lc.decide(observed(full, jobs, pods))
    kept = lc.decide(observed({k: trim.child(v) for k, v in full.items()},
                              {n: trim.job(j) for n, j in jobs.items()},
                              [trim.pod(p) for p in pods]))
    assert [(a.kind, a.change) for a in kept.applies] == \
        [(a.kind, a.change) for a in whole.applies]
    assert (kept.deletes, kept.orphans, kept.status, kept.events) == \
        (whole.deletes, whole.orphans, whole.status, whole.events)
    assert whole.applies   # the added port is drift in both
