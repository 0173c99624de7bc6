"""Builders of test resources and small readers, for the operator's integration tests."""

from __future__ import annotations

import base64
import copy
from typing import Any

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
