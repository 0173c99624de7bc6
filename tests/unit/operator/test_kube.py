"""What `kube` sends for the calls a Deployment's replacement needs (no API server)."""

from __future__ import annotations

from typing import Any

from authz_operator import resources as r
from authz_operator.kube import Kube


class Response:
    status = 200

    def read(self) -> bytes:
        return b"{}"


class FakeApi:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def param_serialize(self, **kw: Any) -> tuple[Any, ...]:
        self.sent.append(kw)
        return kw["method"], kw["resource_path"], kw["header_params"], kw["body"], None

    def call_api(self, *args: Any, **kw: Any) -> Response:
        return Response()


def test_delete_orphans_the_dependents_only_when_asked() -> None:
    api = FakeApi()
    kube = Kube(api)
    kube.delete("Deployment", "ns", "a", uid="u", orphan=True)
    kube.delete("ReplicaSet", "ns", "a-1")
    (first, second) = api.sent
    assert first["resource_path"] == "/apis/apps/v1/namespaces/ns/deployments/a"
    assert first["body"]["propagationPolicy"] == "Orphan"
    assert first["body"]["preconditions"] == {"uid": "u"}
    assert second["resource_path"] == "/apis/apps/v1/namespaces/ns/replicasets/a-1"
    assert second["body"]["propagationPolicy"] == "Background"


def test_the_replicas_handover_is_applied_by_its_own_field_manager() -> None:
    api = FakeApi()
    dep = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "a", "namespace": "ns", "labels": {}},
           "spec": {"replicas": 4, "template": {}}}
    Kube(api).apply(r.replicas_only(dep), r.REPLICAS_MANAGER)
    [sent] = api.sent
    assert ("fieldManager", "authz-operator-replicas") in sent["query_params"]
    assert sent["body"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                            "metadata": {"name": "a", "namespace": "ns"},
                            "spec": {"replicas": 4}}
    assert sent["header_params"]["Content-Type"] == "application/apply-patch+yaml"
