"""Builders of test resources and small readers, for the operator's integration tests."""

from __future__ import annotations

import base64
import contextlib
import copy
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from authz_operator.kube import Kube
from tests.conftest import SHARED_DATABASE_URL

NAME = "authz"
# The image built from Dockerfile.service: its pods are containers on the real node.
IMAGE = "registry.example/authorization-service:1.4.0"

SPEC: dict[str, Any] = {
    "image": IMAGE,
    # Small requests: the real node has two CPUs for every test's pods (limits stay default).
    "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
    # Ready as soon as the service answers (the seed waits 10 s before the first probe).
    "probes": {"readiness": {"initialDelaySeconds": 0, "periodSeconds": 1}},
    "database": {"urlSecretRef": {"name": "authorization-secrets", "key": "database-url"}},
    "redis": {"host": "redis-master.redis.svc.cluster.local"},
    "kafka": {"brokers": ["kafka-0.kafka.svc.cluster.local:9092"]},
    "jwt": {"secretRef": {"name": "authorization-secrets", "key": "jwt-secret"}},
    "imagePullSecrets": [],
}


def cr(namespace: str, name: str = NAME, **spec: Any) -> dict[str, Any]:
    body = copy.deepcopy(SPEC)
    body.update(spec)
    return {"apiVersion": "rwadurian.io/v1alpha1", "kind": "AuthorizationService",
            "metadata": {"name": name, "namespace": namespace}, "spec": body}


def secret(namespace: str, name: str = "authorization-secrets",
           data: dict[str, str] | None = None) -> dict[str, Any]:
    values = data if data is not None else {"database-url": SHARED_DATABASE_URL,
                                            "jwt-secret": "s3cr3t-value-never-logged"}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}}


def status(kube: Kube, namespace: str, name: str = NAME) -> dict[str, Any]:
    obj = kube.get("AuthorizationService", namespace, name) or {}
    return dict(obj.get("status") or {})


def condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in st.get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def events(kube: Kube, namespace: str, name: str = NAME) -> list[dict[str, Any]]:
    out = kube._call("GET", f"/api/v1/namespaces/{namespace}/events")
    return [e for e in out.get("items") or []
            if e["involvedObject"].get("kind") == "AuthorizationService"
            and e["involvedObject"].get("name") == name]


def reasons(kube: Kube, namespace: str, name: str = NAME) -> list[str]:
    return [e["reason"] for e in events(kube, namespace, name)]


def ready_at_generation(kube: Kube, namespace: str, generation: int,
                        name: str = NAME) -> dict[str, Any] | None:
    st = status(kube, namespace, name)
    ready = condition(st, "Ready")
    if (st.get("phase") == "Ready" and st.get("observedGeneration") == generation
            and ready.get("status") == "True" and ready.get("observedGeneration") == generation):
        return st
    return None


# -- Operator faults (issue 12): the operator as a process of its own, killed by pid at a
# chosen moment; what must hold once it has converged again. Shared by
# test_operator_faults.py, test_secrets_in_outputs.py and benchmarks/operator_faults.py.

JOBS_OF = f"app.kubernetes.io/instance={NAME},rwadurian.io/migration"
OWNED_LABEL = f"app.kubernetes.io/instance={NAME}"
GROUP, VERSION, PLURAL = "rwadurian.io", "v1alpha1", "authorizationservices"


class OperatorProcess:
    """`authz-operator --standalone --namespace NS` as a child process of the test, so it can
    be SIGKILLed at any instant (the in-process operator, inprocess.py, can only be stopped
    politely). Every run appends to one log, which a test may grep."""

    def __init__(self, namespace: str, kubeconfig: str, log: Path) -> None:
        self.namespace, self.kubeconfig, self.log = namespace, kubeconfig, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        assert self.proc is None, "already running"
        exe = Path(sys.executable).parent / "authz-operator"
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "AUTHZ_WORKERS": "4"}
        env.pop("AUTHZ_METRICS_PORT", None)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(exe), "--namespace", self.namespace, "--standalone"], env=env,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL, by pid: no cleanup handler, no graceful close, like an OOM kill."""
        proc, self.proc = self.proc, None
        assert proc is not None, "not running"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def watch_objects(list_fn: Callable[..., Any], *args: Any, timeout: float,
                  **kwargs: Any) -> Generator[dict[str, dict[str, Any]], None, None]:
    """List, then watch: yields the current objects (by name, as plain dicts) at once and
    after every change, until `timeout` seconds have passed (then it simply ends)."""
    serialize = k8s.ApiClient().sanitize_for_serialization
    deadline = time.monotonic() + timeout
    listed = serialize(list_fn(*args, **kwargs))
    objects = {o["metadata"]["name"]: o for o in listed.get("items") or []}
    version = listed["metadata"]["resourceVersion"]
    yield objects
    while (left := deadline - time.monotonic()) > 0:
        w = k8s_watch.Watch()
        for event in w.stream(list_fn, *args, resource_version=version,
                              timeout_seconds=max(1, int(left)), **kwargs):
            obj = serialize(event["object"])
            version = obj["metadata"]["resourceVersion"]
            if event["type"] == "DELETED":
                objects.pop(obj["metadata"]["name"], None)
            else:
                objects[obj["metadata"]["name"]] = obj
            yield objects
            if time.monotonic() > deadline:
                w.stop()


def resource_stream(api: Any, namespace: str, timeout: float
                    ) -> Generator[dict[str, dict[str, Any]], None, None]:
    return watch_objects(k8s.CustomObjectsApi(api).list_namespaced_custom_object, GROUP,
                         VERSION, namespace, PLURAL, timeout=timeout)


def until(what: str, stream: Generator[dict[str, dict[str, Any]], None, None],
          predicate: Callable[[dict[str, Any]], bool], name: str = NAME) -> dict[str, Any]:
    """The first state of object `name` in `stream` that satisfies `predicate`."""
    last: dict[str, Any] | None = None
    with contextlib.closing(stream):   # closes the watch's connection too
        for objects in stream:
            last = objects.get(name)
            if last is not None and predicate(last):
                return last
    raise AssertionError(f"timed out waiting for {what}; last seen status: "
                         f"{(last or {}).get('status')}")


def phase_is(phase: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: (obj.get("status") or {}).get("phase") == phase


class JobRecorder:
    """Every migration Job that ever existed in the namespace while it ran (a watch in a
    thread), by uid: a Job deleted and made again, or two Jobs for one revision, both show."""

    def __init__(self, api: Any, namespace: str, timeout: float = 900) -> None:
        self.seen: dict[str, tuple[str, str]] = {}     # uid -> (name, revision label)
        self._stop = threading.Event()
        self._api, self._namespace, self._timeout = api, namespace, timeout
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        batch = k8s.BatchV1Api(self._api)
        deadline = time.monotonic() + self._timeout
        version = ""
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                if not version:   # at first, and after the API server expired our version
                    listed = batch.list_namespaced_job(self._namespace, label_selector=JOBS_OF)
                    self._record(listed.items)
                    version = listed.metadata.resource_version
                # short watches, so stop() is noticed within a second or two
                for event in k8s_watch.Watch().stream(
                        batch.list_namespaced_job, self._namespace, label_selector=JOBS_OF,
                        resource_version=version, timeout_seconds=2):
                    version = event["object"].metadata.resource_version
                    self._record([event["object"]])
            except (ApiException, urllib3.exceptions.HTTPError, OSError):
                # expired, or the API server is away (benchmarks restart it): list again
                version = ""
                self._stop.wait(0.5)

    def _record(self, jobs: list[Any]) -> None:
        for job in jobs:
            labels = job.metadata.labels or {}
            self.seen[job.metadata.uid] = (job.metadata.name, labels.get(
                "rwadurian.io/revision", "?"))

    def per_revision(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, revision in self.seen.values():
            counts[revision] = counts.get(revision, 0) + 1
        return counts

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@dataclass(frozen=True)
class Expected:
    """The resource once it has converged, as a run without any fault ends."""

    phase: str
    ready: tuple[str, str]              # the Ready condition's (status, reason)
    revision: int
    image: str
    schema: str
    outcomes: tuple[str, ...]           # status.history's outcomes, oldest first
    jobs: frozenset[str]                # the migration Jobs' names
    config: tuple[tuple[str, str], ...] = ()   # ConfigMap data entries that must hold

    def reached(self, obj: dict[str, Any]) -> bool:
        st = obj.get("status") or {}
        ready = condition(st, "Ready")
        return (st.get("phase"), st.get("revision"), st.get("image"),
                (ready.get("status"), ready.get("reason")),
                st.get("observedGeneration")) == (
            self.phase, self.revision, self.image, self.ready,
            obj["metadata"].get("generation"))


def status_problems(obj: dict[str, Any], expect: Expected) -> list[str]:
    """What in the converged resource's status is not what a fault-free run gives."""
    st = obj.get("status") or {}
    out: list[str] = []
    if not expect.reached(obj):
        out.append(f"phase/revision/image/Ready: {st.get('phase')} {st.get('revision')} "
                   f"{st.get('image')} {condition(st, 'Ready')}")
    if st.get("schemaVersion") != expect.schema:
        out.append(f"schemaVersion {st.get('schemaVersion')} != {expect.schema}")
    outcomes = tuple(h.get("outcome") for h in st.get("history") or [])
    if outcomes != expect.outcomes:
        out.append(f"history outcomes {outcomes} != {expect.outcomes}")
    if condition(st, "Migrated").get("status") != "True":
        out.append(f"Migrated {condition(st, 'Migrated')}")
    if (st.get("migration") or {}).get("phase") not in (None, "Succeeded"):
        out.append(f"migration record {st.get('migration')}")
    for c in st.get("conditions") or []:
        if c.get("observedGeneration") != obj["metadata"].get("generation"):
            out.append(f"condition {c['type']} of generation {c.get('observedGeneration')}")
    return out


CHILD_KINDS = ("Deployment", "ReplicaSet", "Pod", "Job", "ConfigMap", "Service",
               "ServiceAccount", "PodDisruptionBudget", "HorizontalPodAutoscaler")


def orphans(kube: Kube, namespace: str, owner_uid: str | None) -> list[str]:
    """Objects of the resource (by label) with no live owner, and what a superseded revision
    left running: a ReplicaSet of another image that still wants pods, a serving pod (not
    terminating) of another image than the Deployment's."""
    # items of a list carry no `kind`: put it back
    objects = [{**o, "kind": kind} for kind in CHILD_KINDS
               for o in kube.list(kind, namespace, OWNED_LABEL)]
    live = {o["metadata"]["uid"] for o in objects} | ({owner_uid} if owner_uid else set())
    out = [f"{o['kind']} {o['metadata']['name']}" for o in objects
           if not any(ref.get("uid") in live
                      for ref in o["metadata"].get("ownerReferences") or [])]
    dep = kube.get("Deployment", namespace, NAME)
    image = _image(dep["spec"]["template"]) if dep else None
    for o in objects:
        if o["kind"] == "ReplicaSet" and _image(o["spec"]["template"]) != image and int(
                o["spec"].get("replicas") or 0) > 0:
            out.append(f"ReplicaSet {o['metadata']['name']} of {_image(o['spec']['template'])}"
                       f" wants {o['spec']['replicas']} pods")
        labels = o["metadata"].get("labels") or {}
        if (o["kind"] == "Pod" and labels.get("app.kubernetes.io/component") == "server"
                and not o["metadata"].get("deletionTimestamp") and _image(o) != image):
            out.append(f"Pod {o['metadata']['name']} of {_image(o)} left running")
    return out


def _image(template: dict[str, Any]) -> str:
    return str(template["spec"]["containers"][0]["image"])


def job_names(kube: Kube, namespace: str) -> frozenset[str]:
    return frozenset(j["metadata"]["name"] for j in kube.list("Job", namespace, JOBS_OF))


def config_problems(kube: Kube, namespace: str, expect: Expected) -> list[str]:
    data = (kube.get("ConfigMap", namespace, f"{NAME}-config") or {}).get("data") or {}
    return [f"ConfigMap {k}={data.get(k)!r}, not {v!r}" for k, v in expect.config
            if data.get(k) != v]
