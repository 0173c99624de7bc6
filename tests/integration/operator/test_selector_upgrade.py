"""Upgrading the operator over children an earlier version made: their selectors lack
`app.kubernetes.io/component: server` (so the PDB also counted the migration Job's pods), and
a Deployment's selector is immutable. The operator relabels, orphans and re-adopts: the
Deployment ends with the serving selector, no ownerless ReplicaSet is left, and the Service
never runs out of ready endpoints on the way."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client

from authz_operator import labels, resources
from authz_operator.kube import Kube
from authz_operator.spec import parse_spec
from tests.conftest import DevEnv
from tests.support.kube import api_client

from .conftest import Recorder, wait_for
from .helpers import NAME, cr, reasons, secret
from .inprocess import Operator

pytestmark = pytest.mark.cluster


def _legacy_children(kube: Kube, namespace: str, body: dict[str, Any]) -> None:
    """What the earlier operator applied (same field manager): old selectors and labels."""
    owner_meta = (kube.get("AuthorizationService", namespace, NAME) or {})["metadata"]
    owner = resources.Owner(name=NAME, namespace=namespace, uid=owner_meta["uid"])
    spec = parse_spec(body["spec"])
    target = resources.target_from_spec(spec, {})
    old = labels.selector_labels(NAME)
    dep = resources.desired_deployment(spec, owner, target, selector=old)
    dep["spec"]["template"]["metadata"]["labels"].pop(labels.LABEL_COMPONENT, None)
    for obj in (resources.desired_service_account(spec, owner, target),
                resources.desired_configmap(spec, owner, target),
                resources.desired_service(spec, owner, target, selector=old), dep):
        kube.apply(obj)


def _ready_endpoints(api: Any, namespace: str) -> int:
    slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={NAME}").items
    return sum(1 for s in slices for e in s.endpoints or [] if e.conditions.ready)


def test_an_earlier_versions_deployment_gets_the_serving_selector_without_downtime(
        crd: None, kube: Kube, cluster: DevEnv, namespace: str, recorder: Recorder,
        shared_database: str) -> None:
    api = api_client(cluster.kubeconfig)
    body = cr(namespace, autoscaling={"enabled": False}, replicas=2)
    kube.apply(secret(namespace))
    kube.apply(body)
    kube.field_manager = "authz-operator"
    try:
        _legacy_children(kube, namespace, body)
    finally:
        kube.field_manager = "pytest"
    wait_for("the legacy pods ready", lambda: _ready_endpoints(api, namespace) == 2,
             timeout=90)

    # Watch the Service's endpoints while the new operator takes over.
    lowest = [2]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            lowest[0] = min(lowest[0], _ready_endpoints(api, namespace))
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    op = Operator(namespace)
    op.start()
    try:
        def migrated() -> dict[str, Any] | None:
            dep = kube.get("Deployment", namespace, NAME) or {}
            sel = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            ready = (dep.get("status") or {}).get("readyReplicas") == 2
            return dep if sel == labels.serving_selector(NAME) and ready else None
        wait_for("the Deployment with the serving selector", migrated, timeout=150)
        wait_for("no ownerless ReplicaSet left", lambda: not [
            rs for rs in kube.list("ReplicaSet", namespace,
                                   f"{labels.LABEL_INSTANCE}={NAME}")
            if not rs["metadata"].get("ownerReferences")], timeout=60)
    finally:
        done.set()
        sampler.join(5)
        op.stop()
        api.close()
    assert "SelectorMigrated" in reasons(kube, namespace)
    assert lowest[0] >= 1, "the Service had no ready endpoint during the switch"
    svc = kube.get("Service", namespace, NAME) or {}
    assert svc["spec"]["selector"] == labels.serving_selector(NAME)
