"""Smoke tests that would fail against a fake API server: a real kube-apiserver 1.36 with
controller-manager (Deployments, Jobs, garbage collection), scheduler, RBAC and Pod Security
admission; and kwok's fake nodes, which only pods that tolerate their taint reach (what the
scale tests use: tests/integration/test_real_node.py covers the real node)."""

from __future__ import annotations

import ssl
import urllib.request
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devenv import build
from devenv.cluster import (
    FAKE_NODES,
    MIGRATE_CONTAINER,
    MIGRATION_LABEL,
    ON_FAKE_NODES,
    migrate_up_message,
)
from tests.support.kube import condition, watch_until

pytestmark = pytest.mark.cluster


def test_readyz_and_version(api: Any) -> None:
    cfg = api.configuration
    ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
    token = cfg.auth_settings()["BearerToken"]["value"]
    req = urllib.request.Request(f"{cfg.host}/readyz", headers={"Authorization": token})
    with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
        assert (resp.status, resp.read()) == (200, b"ok")
    version = client.VersionApi(api).get_code()
    assert version.git_version == build.k8s_version()


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {**ON_FAKE_NODES,
                                       "containers": [{"name": "c", "image": "busybox:1.36"}]}}},
    }


def test_deployment_pods_become_running_and_ready_on_fake_nodes(api: Any, namespace: str) -> None:
    client.AppsV1Api(api).create_namespaced_deployment(namespace, _deployment("web", 2))
    pods = watch_until(
        client.CoreV1Api(api).list_namespaced_pod,
        lambda ps: len(ps) == 2 and all(
            p["status"].get("phase") == "Running" and condition(p, "Ready") == "True"
            for p in ps),
        namespace, label_selector="app=web", timeout=60)
    assert {p["spec"]["nodeName"] for p in pods} <= set(FAKE_NODES)
    watch_until(client.AppsV1Api(api).list_namespaced_deployment,
                lambda ds: ds[0]["status"].get("availableReplicas") == 2, namespace,
                timeout=60)


def test_pods_that_do_not_ask_for_fake_nodes_never_land_there(api: Any, namespace: str) -> None:
    spec = _deployment("plain", 1)
    spec["spec"]["template"]["spec"].pop("tolerations")
    spec["spec"]["template"]["spec"].pop("nodeSelector")
    client.AppsV1Api(api).create_namespaced_deployment(namespace, spec)
    [pod] = watch_until(client.CoreV1Api(api).list_namespaced_pod,
                        lambda ps: len(ps) == 1 and bool(ps[0]["spec"].get("nodeName")),
                        namespace, label_selector="app=plain", timeout=60)
    assert pod["spec"]["nodeName"] not in FAKE_NODES


def test_job_completes_on_a_fake_node(api: Any, namespace: str) -> None:
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            **ON_FAKE_NODES, "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox:1.36"}]}}},
    }
    client.BatchV1Api(api).create_namespaced_job(namespace, job)
    watch_until(client.BatchV1Api(api).list_namespaced_job,
                lambda js: condition(js[0], "Complete") == "True", namespace, timeout=60)


def test_an_up_migration_pod_on_a_fake_node_ends_with_migrate_ups_message(
        api: Any, namespace: str) -> None:
    """kwok's stage of ours (devenv.cluster.migrate_up_stage): the operator reads the same
    termination message there as from the real `authz-service migrate up`."""
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "svc-migrate-1"},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": {MIGRATION_LABEL: "up"}},
            "spec": {**ON_FAKE_NODES, "restartPolicy": "Never", "containers": [
                {"name": MIGRATE_CONTAINER,
                 "image": "registry.example/authorization-service:1.4.0"}]}}},
    }
    client.BatchV1Api(api).create_namespaced_job(namespace, job)
    pods = watch_until(
        client.CoreV1Api(api).list_namespaced_pod,
        lambda ps: bool(ps) and ps[0]["status"].get("phase") == "Succeeded", namespace,
        label_selector="batch.kubernetes.io/job-name=svc-migrate-1", timeout=60)
    [status] = pods[0]["status"]["containerStatuses"]
    assert status["state"]["terminated"].get("message") == migrate_up_message(), (
        "no migrate message: an environment started before the stage? ./hack/down && ./hack/up")


def test_garbage_collector_deletes_dependents(api: Any, namespace: str) -> None:
    core = client.CoreV1Api(api)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    core.create_namespaced_config_map(namespace, {"metadata": {
        "name": "dependent", "labels": {"gc": "yes"},
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                             "uid": owner.metadata.uid}]}})
    core.delete_namespaced_config_map("owner", namespace)
    watch_until(core.list_namespaced_config_map, lambda cms: cms == [], namespace,
                label_selector="gc=yes", timeout=60)


def test_rbac_denies_a_service_account_without_roles(api: Any, namespace: str) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, {"spec": {"expirationSeconds": 600}}).status.token
    cfg = client.Configuration()
    cfg.host = api.configuration.host
    cfg.ssl_ca_cert = api.configuration.ssl_ca_cert
    cfg.api_key = {"BearerToken": f"Bearer {token}"}
    with client.ApiClient(cfg) as limited:
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(limited).list_namespaced_secret(namespace)
        assert denied.value.status == 403


def test_pod_security_admission_refuses_privileged_pods(api: Any, namespace: str) -> None:
    core = client.CoreV1Api(api)
    core.patch_namespace(namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted"}}})
    pod = {"metadata": {"name": "priv"}, "spec": {"containers": [{
        "name": "c", "image": "busybox:1.36", "securityContext": {"privileged": True}}]}}
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, pod, dry_run="All")
    assert refused.value.status == 403
    assert "violates PodSecurity" in refused.value.body
