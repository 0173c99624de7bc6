"""What `kube` sends for the calls a Deployment's replacement needs, and how it reads the API
server's answers (a fake transport, no API server)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from authz_operator import resources as r
from authz_operator.apiclient import ConnectionFailed
from authz_operator.kube import Kube, KubeError


@dataclass
class FakeApi:
    answer: tuple[int, bytes] = (200, b"{}")
    fail: bool = False
    sent: list[dict[str, Any]] = field(default_factory=list)

    def send(self, method: str, path: str, query: list[tuple[str, str]],
             body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        self.sent.append({"method": method, "path": path, "query": query, "headers": headers,
                          "body": None if body is None else json.loads(body)})
        if self.fail:
            raise ConnectionFailed("connection refused")
        return self.answer

    def close(self) -> None:
        pass


def test_delete_orphans_the_dependents_only_when_asked() -> None:
    api = FakeApi()
    kube = Kube(api)
    kube.delete("Deployment", "ns", "a", uid="u", orphan=True)
    kube.delete("ReplicaSet", "ns", "a-1")
    (first, second) = api.sent
    assert (first["method"], first["path"]) == ("DELETE",
                                                "/apis/apps/v1/namespaces/ns/deployments/a")
    assert first["body"]["propagationPolicy"] == "Orphan"
    assert first["body"]["preconditions"] == {"uid": "u"}
    assert second["path"] == "/apis/apps/v1/namespaces/ns/replicasets/a-1"
    assert second["body"]["propagationPolicy"] == "Background"


def test_the_replicas_handover_is_applied_by_its_own_field_manager() -> None:
    api = FakeApi()
    dep = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "a", "namespace": "ns", "labels": {}},
           "spec": {"replicas": 4, "template": {}}}
    Kube(api).apply(r.replicas_only(dep), r.REPLICAS_MANAGER)
    [sent] = api.sent
    assert sent["method"] == "PATCH"
    assert ("fieldManager", "authz-operator-replicas") in sent["query"]
    assert ("force", "true") in sent["query"]
    assert sent["body"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                            "metadata": {"name": "a", "namespace": "ns"},
                            "spec": {"replicas": 4}}
    assert sent["headers"]["Content-Type"] == "application/apply-patch+yaml"


def test_a_get_sends_no_body_and_reads_the_object() -> None:
    api = FakeApi(answer=(200, b'{"kind": "Service", "metadata": {"name": "a"}}'))
    assert Kube(api).get("Service", "ns", "a") == {"kind": "Service", "metadata": {"name": "a"}}
    [sent] = api.sent
    assert sent["body"] is None
    assert "Content-Type" not in sent["headers"]
    assert sent["headers"]["Accept"] == "application/json"


def test_a_metadata_list_sends_the_selectors_it_is_given() -> None:
    api = FakeApi(answer=(200, b'{"metadata": {"resourceVersion": "12"}, "items": []}'))
    assert Kube(api).list_metadata("Pod", "ns", "a=b", "status.phase=Running") == ([], 12)
    assert Kube(api).list_metadata("ConfigMap", "ns", "a=b") == ([], 12)
    pods, maps = api.sent
    assert pods["query"] == [("labelSelector", "a=b"), ("fieldSelector", "status.phase=Running")]
    assert maps["query"] == [("labelSelector", "a=b")]
    assert pods["path"] == "/api/v1/namespaces/ns/pods"


def test_a_missing_object_is_none_and_other_errors_carry_the_api_servers_message() -> None:
    assert Kube(FakeApi(answer=(404, b'{"message": "not found"}'))).get("Service", "n", "a") \
        is None
    with pytest.raises(KubeError) as caught:
        Kube(FakeApi(answer=(422, b'{"kind": "Status", "message": "spec.ports: Invalid"}'))) \
            .get("Service", "ns", "a")
    assert (caught.value.status, caught.value.message) == (422, "spec.ports: Invalid")
    assert not caught.value.transient
    with pytest.raises(KubeError) as caught:
        Kube(FakeApi(answer=(503, b"upstream down"))).get("Service", "ns", "a")
    assert (caught.value.status, caught.value.message) == (503, "upstream down")
    assert caught.value.transient


def test_no_answer_is_status_0_and_transient() -> None:
    with pytest.raises(KubeError) as caught:
        Kube(FakeApi(fail=True)).get("Service", "ns", "a")
    assert caught.value.status == 0
    assert caught.value.transient
    assert "connection refused" in str(caught.value)
