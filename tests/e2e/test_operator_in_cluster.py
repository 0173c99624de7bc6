"""The operator as `./hack/up` installs it: `kubectl apply -k` of manifests/ (cluster mode,
its ServiceAccount and shipped RBAC, the restricted Pod Security level), two replicas that
are pods of the image built from Dockerfile.operator on the real node. It serves every
namespace but the tests' own (t-*), one replica acts at a time, and replicas killed in the
middle of a migration leave nothing half done."""

from __future__ import annotations

import secrets
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.integration.operator.helpers import cr, secret
from tests.support.kube import condition, watch_until

pytestmark = pytest.mark.cluster

SYSTEM = "authz-system"
OPERATOR_PODS = "app.kubernetes.io/name=authz-operator"
GROUP, VERSION, PLURAL = "rwadurian.io", "v1alpha1", "authorizationservices"
ONE_REPLICA = {"autoscaling": {"enabled": False}, "replicas": 1}


@pytest.fixture
def served_namespace(api: Any, shared_database: str) -> Iterator[str]:
    """A namespace nobody listed (not t-*): the in-cluster operator serves it."""
    core = client.CoreV1Api(api)
    name = f"e2e-{secrets.token_hex(4)}"
    core.create_namespace({"metadata": {"name": name}})
    watch_until(core.list_namespaced_service_account,
                lambda sas: any(s["metadata"]["name"] == "default" for s in sas), name,
                timeout=30)
    yield name
    core.delete_namespace(name)


def _operator_pods(api: Any) -> list[dict[str, Any]]:
    return watch_until(
        client.CoreV1Api(api).list_namespaced_pod,
        lambda ps: len(ps) == 2 and all(condition(p, "Ready") == "True" for p in ps),
        SYSTEM, label_selector=OPERATOR_PODS, timeout=120)


def _create(api: Any, namespace: str, **spec: Any) -> None:
    client.CoreV1Api(api).create_namespaced_secret(namespace, secret(namespace))
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, cr(namespace, **spec))


def _resource_until(api: Any, namespace: str, predicate: Any,
                    timeout: int = 120) -> dict[str, Any]:
    found = watch_until(client.CustomObjectsApi(api).list_namespaced_custom_object,
                        lambda objs: any(predicate(o) for o in objs),
                        GROUP, VERSION, namespace, PLURAL, timeout=timeout)
    return next(o for o in found if predicate(o))


def _ready(obj: dict[str, Any]) -> bool:
    return bool((obj.get("status") or {}).get("phase") == "Ready"
                and condition(obj, "Ready") == "True")


def test_the_operator_is_two_pods_of_its_image_under_restricted_pod_security(api: Any) -> None:
    ns = client.CoreV1Api(api).read_namespace(SYSTEM)
    assert ns.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for pod in _operator_pods(api):
        assert pod["spec"]["nodeName"] == "authz-node"
        assert pod["spec"]["serviceAccountName"] == "authz-operator"
        [container] = pod["spec"]["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        [status] = pod["status"]["containerStatuses"]
        assert "/authz-operator:" in status["image"]          # built from Dockerfile.operator
        assert status["containerID"].startswith("containerd://")
        assert status["restartCount"] == 0                    # its liveness probe passes


def test_the_operator_serves_its_metrics_from_the_container(api: Any) -> None:
    for pod in _operator_pods(api):
        with urllib.request.urlopen(f"http://{pod['status']['podIP']}:9090/metrics",
                                    timeout=5) as resp:
            assert "authz_operator_" in resp.read().decode()


def test_one_replica_serves_a_namespace_nobody_listed_and_none_touches_the_tests_own(
        api: Any, served_namespace: str, namespace: str) -> None:
    _create(api, namespace, **ONE_REPLICA)          # t-*: left to the tests' own operators
    _create(api, served_namespace, **ONE_REPLICA)
    ready = _resource_until(api, served_namespace, _ready)
    assert ready["status"]["revision"] == 1
    core = client.CoreV1Api(api)
    logs = {p["metadata"]["name"]: core.read_namespaced_pod_log(p["metadata"]["name"], SYSTEM)
            for p in _operator_pods(api)}
    acted = [pod for pod, log in logs.items() if f"{served_namespace}/authz: create" in log]
    assert len(acted) == 1, f"replicas that created children: {acted}"
    # By now the operator has had every chance to act on the other one too; it did not.
    untouched = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "authz")
    assert not untouched.get("status"), untouched.get("status")
    assert not [a for a in untouched["metadata"].get("annotations") or {}
                if a.startswith("authz.rwadurian.io")]
    assert not client.AppsV1Api(api).list_namespaced_deployment(namespace).items
    assert not any(namespace in log for log in logs.values())


def test_replicas_killed_mid_migration_leave_one_job_and_converge(
        api: Any, served_namespace: str) -> None:
    _create(api, served_namespace, **ONE_REPLICA)
    _resource_until(api, served_namespace,
                    lambda o: (o.get("status") or {}).get("phase") == "Migrating", timeout=60)
    core = client.CoreV1Api(api)
    for pod in _operator_pods(api):
        # Both: whichever was acting dies mid-migration; the Deployment starts new ones.
        core.delete_namespaced_pod(pod["metadata"]["name"], SYSTEM, grace_period_seconds=0)
    ready = _resource_until(api, served_namespace, _ready, timeout=180)
    jobs = client.BatchV1Api(api).list_namespaced_job(served_namespace).items
    assert [j.metadata.name for j in jobs] == ["authz-migrate-1"], ready["status"]
    assert (ready["status"]["revision"], condition(ready, "Migrated")) == (1, "True")
