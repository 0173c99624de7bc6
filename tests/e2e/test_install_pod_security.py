"""A namespace labelled `pod-security.kubernetes.io/enforce=restricted` admits the operator's
pods and the service's pods (Deployment and migration Job, as the operator builds them): the
local API server's real PodSecurity admission decides. A pod that breaks the standard is
refused, so the test can fail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from authz_operator import resources
from authz_operator.spec import parse_spec
from tests.conftest import DevEnv
from tests.support.kube import api_client
from tests.unit.install.manifests import MANIFESTS, render

pytestmark = pytest.mark.cluster

SPEC = parse_spec({
    "image": "registry.example/authorization-service:1.4.0",
    "database": {"urlSecretRef": {"name": "authorization-secrets", "key": "database-url"}},
    "redis": {"host": "redis"}, "kafka": {"brokers": ["kafka:9092"]},
    "jwt": {"secretRef": {"name": "authorization-secrets", "key": "jwt-secret"}},
    "imagePullSecrets": ["registry-credentials"],
})


@pytest.fixture
def restricted(cluster: DevEnv, namespace: str) -> Iterator[tuple[Any, str]]:
    api = api_client(cluster.kubeconfig)
    client.CoreV1Api(api).patch_namespace(namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest"}}})
    for sa in ("authz", "authz-operator"):   # the ServiceAccount admission wants them to exist
        client.CoreV1Api(api).create_namespaced_service_account(
            namespace, {"metadata": {"name": sa}})
    yield api, namespace
    api.close()


def _dry_run_pod(api: Any, namespace: str, name: str, pod_spec: dict[str, Any]) -> None:
    client.CoreV1Api(api).create_namespaced_pod(
        namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                    "spec": pod_spec}, dry_run="All")


def _service_pod_specs(namespace: str) -> dict[str, dict[str, Any]]:
    owner = resources.Owner("authz", namespace, "00000000-0000-0000-0000-000000000001")
    target = resources.target_from_spec(SPEC, {})
    dep = resources.desired_deployment(SPEC, owner, target)
    job = resources.desired_migration_job(SPEC, owner, target, revision=1)
    down = resources.desired_migration_job(SPEC, owner, target, revision=2, down_to="0002")
    return {"service": dep["spec"]["template"]["spec"],
            "migrate": job["spec"]["template"]["spec"],
            "rollback": down["spec"]["template"]["spec"]}


def test_operator_pod_is_admitted(restricted: tuple[Any, str]) -> None:
    api, namespace = restricted
    dep = next(o for o in render(MANIFESTS) if o["kind"] == "Deployment")
    _dry_run_pod(api, namespace, "operator", dep["spec"]["template"]["spec"])


@pytest.mark.parametrize("which", ["service", "migrate", "rollback"])
def test_service_pods_are_admitted(restricted: tuple[Any, str], which: str) -> None:
    api, namespace = restricted
    _dry_run_pod(api, namespace, which, _service_pod_specs(namespace)[which])


def test_a_pod_breaking_the_standard_is_refused(restricted: tuple[Any, str]) -> None:
    api, namespace = restricted
    pod = _service_pod_specs(namespace)["service"]
    pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    with pytest.raises(ApiException) as err:
        _dry_run_pod(api, namespace, "bad", pod)
    assert err.value.status == 403
    assert "violates PodSecurity" in str(err.value.body)
    assert "allowPrivilegeEscalation" in str(err.value.body)
