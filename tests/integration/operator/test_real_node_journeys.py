"""What only a real node shows, through the operator: the PodDisruptionBudget counts only the
serving pods (not the migration Job's) so one eviction is allowed and a second right after
is refused; the HPA reads CPU and memory from metrics-server, scales the Deployment up under
load and back down; an OOM-killed container is named in the resource's status and events."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from authz_operator.kube import Kube
from tests.conftest import DevEnv
from tests.support.kube import api_client

from .conftest import wait_for
from .helpers import IMAGE, NAME, condition, cr, events, ready_at_generation, secret, status
from .inprocess import Operator

pytestmark = pytest.mark.cluster

SERVING = f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=server"


@pytest.fixture
def core(cluster: DevEnv) -> Iterator[Any]:
    api = api_client(cluster.kubeconfig)
    yield client.CoreV1Api(api)
    api.close()


def _create(kube: Kube, namespace: str, **spec: Any) -> dict[str, Any]:
    kube.apply(secret(namespace))
    kube.apply(cr(namespace, **spec))
    return wait_for("Ready", lambda: ready_at_generation(kube, namespace, 1), timeout=120)


def _serving_pods(kube: Kube, namespace: str) -> list[str]:
    return sorted(p["metadata"]["name"] for p in kube.list("Pod", namespace, SERVING)
                  if not p["metadata"].get("deletionTimestamp"))


def test_one_eviction_is_allowed_and_a_second_right_after_is_refused(
        operator: Operator, kube: Kube, namespace: str, core: Any) -> None:
    _create(kube, namespace)          # the HPA's two replicas, and the migration Job's pod
    assert kube.list("Pod", namespace, "rwadurian.io/migration"), "the Job's pod is gone"

    def budget() -> dict[str, Any] | None:
        st = (kube.get("PodDisruptionBudget", namespace, NAME) or {}).get("status") or {}
        return st if (st.get("expectedPods"), st.get("disruptionsAllowed")) == (2, 1) else None
    wait_for("the PDB counting the two serving pods", budget)

    first, second = _serving_pods(kube, namespace)
    core.create_namespaced_pod_eviction(first, namespace, {"metadata": {"name": first}})
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod_eviction(second, namespace, {"metadata": {"name": second}})
    assert refused.value.status == 429
    assert "disruption budget" in str(refused.value.body)


@contextmanager
def _load(url: str, seconds: float, workers: int = 6) -> Iterator[None]:
    """Requests as fast as they go to `url` (a ClusterIP of our own namespace), for at most
    `seconds`: a bounded load that stops by itself."""
    stop = threading.Event()
    deadline = time.monotonic() + seconds

    def hammer() -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    resp.read()
            except OSError:
                pass
    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join(5)


def _replicas(kube: Kube, namespace: str) -> int:
    return int(((kube.get("Deployment", namespace, NAME) or {}).get("spec") or {}).get(
        "replicas", 0))


def test_the_hpa_reads_cpu_and_memory_and_scales_up_under_load_and_back_down(
        operator: Operator, kube: Kube, namespace: str) -> None:
    _create(kube, namespace,
            autoscaling={"enabled": True, "minReplicas": 1, "maxReplicas": 3,
                         "targetCPUUtilization": 50, "targetMemoryUtilization": 80},
            resources={"requests": {"cpu": "50m", "memory": "256Mi"}})

    def metrics_read() -> dict[str, Any] | None:
        hpa = (kube.get("HorizontalPodAutoscaler", namespace, NAME) or {}).get("status") or {}
        got = {m["resource"]["name"]: m["resource"]["current"]
               for m in hpa.get("currentMetrics") or [] if m.get("type") == "Resource"}
        return got if {"cpu", "memory"} <= set(got) else None
    current = wait_for("the HPA reading cpu and memory", metrics_read, timeout=90)
    assert current["memory"]["averageUtilization"] > 0

    svc = kube.get("Service", namespace, NAME) or {}
    url = f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}/health/live"
    with _load(url, seconds=120):
        wait_for("scaled up under load", lambda: _replicas(kube, namespace) > 1, timeout=120)
    # The local controller-manager waits 15 s (not 5 min) before it scales down.
    wait_for("scaled back down once the load stopped",
             lambda: _replicas(kube, namespace) == 1, timeout=150)


def test_an_oom_killed_container_is_named_in_status_and_events(
        operator: Operator, kube: Kube, namespace: str) -> None:
    rollout = {"progressDeadlineSeconds": 600, "autoRollback": True, "revisionHistoryLimit": 10}
    _create(kube, namespace, autoscaling={"enabled": False}, replicas=1, rollout=rollout)
    kube.apply(cr(namespace, image=IMAGE.replace("1.4.0", "1.4.0-oom"),
                  autoscaling={"enabled": False}, replicas=1, rollout=rollout))

    def rolled_back() -> dict[str, Any] | None:
        st = status(kube, namespace)
        return st if condition(st, "Degraded").get("reason") == "RolledBack" else None
    st = wait_for("the OOM-killed rollout rolled back", rolled_back, timeout=150)
    assert "OOMKilled (exit code 137)" in st["history"][-1]["message"], st["history"][-1]
    assert any("OOMKilled" in e["message"] for e in events(kube, namespace)
               if e["reason"] == "RolloutFailed")
    assert st["image"] == IMAGE
