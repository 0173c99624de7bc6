"""The real node: containers of the image built from Dockerfile.service run in containerd, the
kubelet's probes decide Ready and restarts, the kubelet reports the termination message the
container wrote, Services route through kube-proxy, cluster DNS names the environment's
servers as the seed does, and metrics-server serves resource metrics."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client

from tests.conftest import DevEnv
from tests.support.kube import api_client, condition, poll_until, watch_until

pytestmark = pytest.mark.cluster

NODE = "authz-node"
IMAGE = "registry.example/authorization-service:1.4.0"
REAL_NODE = {"nodeSelector": {"kubernetes.io/hostname": NODE}}
# The service's environment with the servers under the names the seed gives them.
SERVICE_ENV = {
    "NODE_ENV": "production", "PORT": "3002", "LOG_LEVEL": "info",
    "REDIS_HOST": "redis-master.redis.svc.cluster.local", "REDIS_PORT": "6379",
    "KAFKA_BROKERS": "kafka-0.kafka.svc.cluster.local:9092",
    "JWT_SECRET": "real-node-test-secret",
}


@pytest.fixture
def core(cluster: DevEnv) -> Iterator[Any]:
    api = api_client(cluster.kubeconfig)
    yield client.CoreV1Api(api)
    api.close()


def _pod(name: str, container: dict[str, Any], restart: str = "Always",
         labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": name}},
            "spec": {**REAL_NODE, "restartPolicy": restart,
                     "terminationGracePeriodSeconds": 2,
                     "containers": [{"name": "main", "image": IMAGE,
                                     "resources": {"requests": {"cpu": "10m",
                                                                "memory": "64Mi"},
                                                   "limits": {"memory": "256Mi"}},
                                     **container}]}}


def _env(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in sorted(values.items())]


def _wait_pod(core: Any, namespace: str, name: str, check: Any, timeout: int = 60) -> Any:
    [pod] = watch_until(core.list_namespaced_pod, lambda pods: any(check(p) for p in pods),
                        namespace, field_selector=f"metadata.name={name}", timeout=timeout)
    return pod


def _ready(pod: dict[str, Any]) -> bool:
    return condition(pod, "Ready") == "True"


def _kubectl(cluster: DevEnv, *args: str) -> str:
    out = subprocess.run([cluster.kubectl, f"--kubeconfig={cluster.kubeconfig}", *args],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
    return out.stdout


@pytest.fixture
def service_pod(core: Any, namespace: str, fresh_database: str) -> str:
    """The real service (`authz-service serve`) on the node, its database migrated by a
    `migrate up` container first, Ready by its readiness probe; behind a Service `authz`."""
    database = urlsplit(fresh_database)._replace(
        netloc="postgres@postgres.postgres.svc.cluster.local:5432").geturl()
    env = _env({**SERVICE_ENV, "DATABASE_URL": database})
    pod = _pod("authz", {
        "command": ["authz-service", "serve"], "env": env,
        "ports": [{"name": "http", "containerPort": 3002}],
        "readinessProbe": {"httpGet": {"path": "/health/ready", "port": "http"},
                           "periodSeconds": 1},
    })
    pod["spec"]["initContainers"] = [{"name": "migrate", "image": IMAGE, "env": env,
                                      "command": ["authz-service", "migrate", "up"]}]
    core.create_namespaced_pod(namespace, pod)
    core.create_namespaced_service(namespace, {
        "metadata": {"name": "authz"},
        "spec": {"selector": {"app": "authz"}, "ports": [{"port": 80, "targetPort": "http"}]}})
    _wait_pod(core, namespace, "authz", _ready, timeout=90)
    return database


def test_service_container_is_ready_by_the_kubelets_probe_and_reached_by_dns(
        cluster: DevEnv, core: Any, namespace: str, service_pod: str) -> None:
    pod = core.read_namespaced_pod("authz", namespace)
    assert pod.spec.node_name == NODE
    [status] = pod.status.container_statuses
    assert "/authorization-service:" in status.image   # built from Dockerfile.service
    assert status.container_id.startswith("containerd://")
    # From another pod: the Service's DNS name (CoreDNS) and ClusterIP (kube-proxy).
    fetch = ("import json, urllib.request; r = urllib.request.urlopen("
             f"'http://authz.{namespace}.svc.cluster.local/health/ready', timeout=5); "
             "print(json.dumps([r.status, json.load(r)]))")
    client_pod = _pod("client", {"command": ["python", "-c", fetch]}, restart="Never")
    core.create_namespaced_pod(namespace, client_pod)
    done = _wait_pod(core, namespace, "client",
                     lambda p: (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"))
    log = core.read_namespaced_pod_log("client", namespace)
    assert done["status"]["phase"] == "Succeeded", log
    code, body = json.loads(log.strip().splitlines()[-1])
    assert code == 200
    assert body["status"] == "ok", body


def test_liveness_probe_failures_restart_the_container(core: Any, namespace: str) -> None:
    # The unready variant's `serve` never answers: the kubelet kills and restarts it.
    pod = _pod("stuck", {
        "image": IMAGE.replace("1.4.0", "1.4.0-unready"),
        "command": ["authz-service", "serve"],
        "livenessProbe": {"httpGet": {"path": "/health/live", "port": 3002},
                          "periodSeconds": 1, "failureThreshold": 1},
    })
    core.create_namespaced_pod(namespace, pod)
    restarted = _wait_pod(core, namespace, "stuck", lambda p: any(
        cs.get("restartCount", 0) >= 1
        for cs in (p.get("status") or {}).get("containerStatuses") or []), timeout=60)
    [cs] = restarted["status"]["containerStatuses"]
    assert cs["lastState"]["terminated"]["finishedAt"]   # the kubelet ended the first run
    events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=stuck")
    assert any(e.reason == "Unhealthy" and "Liveness" in e.message for e in events.items)


def test_kubelet_reports_the_termination_message_the_container_wrote(
        core: Any, namespace: str) -> None:
    # `migrate up` against a database that does not exist writes its JSON result to
    # /dev/termination-log; the kubelet reads it from there.
    env = _env({**SERVICE_ENV, "DATABASE_URL":
                "postgresql://postgres@postgres.postgres.svc.cluster.local:5432/absent"})
    pod = _pod("migrate", {"command": ["authz-service", "migrate", "up"], "env": env},
               restart="Never")
    core.create_namespaced_pod(namespace, pod)
    done = _wait_pod(core, namespace, "migrate",
                     lambda p: (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"))
    assert done["status"]["phase"] == "Failed"
    [cs] = done["status"]["containerStatuses"]
    terminated = cs["state"]["terminated"]
    assert terminated["exitCode"] != 0
    result = json.loads(terminated["message"])
    assert "absent" in result["error"], result


def test_metrics_server_serves_the_pods_cpu_and_memory(
        cluster: DevEnv, core: Any, namespace: str, service_pod: str) -> None:
    def top() -> dict[str, Any] | None:
        out = subprocess.run([cluster.kubectl, f"--kubeconfig={cluster.kubeconfig}", "get",
                              "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}"
                              "/pods/authz"], capture_output=True, text=True, timeout=10,
                             check=False)
        return dict(json.loads(out.stdout)) if out.returncode == 0 else None
    # metrics-server scrapes every 10 s and its API cannot be watched: ask until it knows.
    sample = poll_until("the pod's metrics from metrics.k8s.io", top, timeout=60)
    [container] = sample["containers"]
    assert container["usage"]["memory"].endswith("Ki")
    top_out = _kubectl(cluster, "top", "pod", "authz", "-n", namespace, "--no-headers")
    assert top_out.split()[0] == "authz"
