"""manifests/ renders with kustomize into what the issue asks for: the CRD from crds/ (one
source), least-privilege RBAC derived from what the operator's code does, a restricted
two-replica operator Deployment, and a namespaced overlay with no cluster-wide access beyond
CRD discovery. (tests/e2e/test_install_*.py applies them to the real API server.)"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from authz_operator import handlers, kube, resources
from authz_operator.spec import GROUP, PLURAL
from tests.unit.install.manifests import (
    MANIFESTS,
    NAMESPACED,
    ROOT,
    Obj,
    Rule,
    find,
    one,
    render,
    rules,
)

CHILD = {"get", "list", "watch", "create", "patch", "delete"}
KOPF_CLUSTER: set[Rule] = {
    ("kopf.dev", "clusterkopfpeerings", v) for v in ("get", "list", "watch", "patch")
} | {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")
     } | {("", "namespaces", v) for v in ("list", "watch")}
# kopf's discovery: all that stays cluster-wide in namespaced mode
DISCOVERY: set[Rule] = {
    ("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")
} | {("", "namespaces", v) for v in ("list", "watch")}
KOPF_NAMESPACED: set[Rule] = {
    ("kopf.dev", "kopfpeerings", v) for v in ("get", "list", "watch", "patch")}


def _group_plural(kind: str) -> tuple[str, str]:
    k = kube.KINDS[kind]
    return k.group, k.plural


def expected_namespaced_rules() -> set[Rule]:
    """What operator/authz_operator does in a watched namespace, derived from its code."""
    out: set[Rule] = set()
    children = {*resources.OWNED_KINDS, "Job"}
    for kind in children:        # kube.get / apply (create or patch) / delete; kopf list+watch
        group, plural = _group_plural(kind)
        out |= {(group, plural, v) for v in CHILD}
    out |= {(GROUP, PLURAL, v) for v in ("get", "list", "watch", "patch")}
    out |= {(GROUP, f"{PLURAL}/status", "patch"), (GROUP, f"{PLURAL}/finalizers", "update")}
    out |= {("", "secrets", v) for v in ("get", "list", "watch")}   # secret_view + kopf index
    out |= {("", "pods", v) for v in ("list", "watch")}   # kopf watch + Job pods' messages
    # a Deployment of an earlier version replaced: its orphaned ReplicaSets (lifecycle.selector),
    # listed when they can exist (not watched) and deleted
    out |= {("apps", "replicasets", v) for v in ("list", "delete")}
    out.add(("", "events", "create"))
    return out


@pytest.fixture(scope="module")
def base() -> list[Obj]:
    return render(MANIFESTS)


@pytest.fixture(scope="module")
def namespaced() -> list[Obj]:
    return render(NAMESPACED)


def test_base_is_what_apply_k_manifests_installs(base: list[Obj]) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in base)
    assert kinds == sorted([
        ("Namespace", "authz-system"),
        ("CustomResourceDefinition", "authorizationservices.rwadurian.io"),
        ("CustomResourceDefinition", "clusterkopfpeerings.kopf.dev"),
        ("CustomResourceDefinition", "kopfpeerings.kopf.dev"),
        ("ClusterKopfPeering", "default"),
        ("ServiceAccount", "authz-operator"),
        ("ClusterRole", "authz-operator"),
        ("ClusterRoleBinding", "authz-operator"),
        ("Deployment", "authz-operator"),
        ("PodDisruptionBudget", "authz-operator"),
        ("Service", "authz-operator-metrics"),
    ])
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterKopfPeering",
                      "ClusterRole", "ClusterRoleBinding"}
    for obj in base:
        ns = obj["metadata"].get("namespace")
        assert (ns is None) if obj["kind"] in cluster_scoped else (ns == "authz-system"), obj


def test_crd_comes_from_crds_unchanged_but_for_the_part_of_label(base: list[Obj]) -> None:
    shipped = one(base, "CustomResourceDefinition", f"{PLURAL}.{GROUP}")
    source = yaml.safe_load((ROOT / "crds" / f"{PLURAL}.{GROUP}.yaml").read_text())
    shipped["metadata"]["labels"].pop("app.kubernetes.io/part-of")
    source["metadata"]["labels"].pop("app.kubernetes.io/part-of", None)
    assert shipped == source


def test_operator_namespace_enforces_restricted_pod_security(base: list[Obj]) -> None:
    labels = one(base, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_every_kind_the_api_layer_knows_is_covered_by_rbac(base: list[Obj]) -> None:
    granted = {(g, r) for g, r, _ in rules(one(base, "ClusterRole", "authz-operator"))}
    for kind in kube.KINDS:
        assert _group_plural(kind) in granted, f"{kind} is in kube.KINDS but not in the ClusterRole"
    for group, _version, plural in handlers.CHILD_RESOURCES:
        assert (group, plural) in granted, f"kopf watches {plural}: list/watch needed"


def test_children_watched_are_the_children_owned() -> None:
    """If the operator starts owning or watching another kind, RBAC must follow: this test
    names the place."""
    watched = {(g, p) for g, _v, p in handlers.CHILD_RESOURCES}
    owned = {_group_plural(k) for k in (*resources.OWNED_KINDS, "Job")}
    assert watched == owned | {("", "pods")}   # pods: watched (crash detection), not owned


def test_cluster_role_is_exactly_what_the_operator_uses(base: list[Obj]) -> None:
    granted = rules(one(base, "ClusterRole", "authz-operator"))
    expected = expected_namespaced_rules() | KOPF_CLUSTER
    assert granted - expected == set(), "granted but never used"
    assert expected - granted == set(), "used but not granted"


def test_cluster_role_is_bound_to_the_operator_service_account(base: list[Obj]) -> None:
    binding = one(base, "ClusterRoleBinding", "authz-operator")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": "authz-operator"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "authz-operator",
                                    "namespace": "authz-system"}]


def _operator_pod(objs: list[Obj]) -> dict[str, Any]:
    dep = one(objs, "Deployment", "authz-operator")
    pod: dict[str, Any] = dep["spec"]["template"]["spec"]
    return pod


def test_operator_deployment(base: list[Obj]) -> None:
    dep = one(base, "Deployment", "authz-operator")
    assert dep["spec"]["replicas"] == 2   # peering decides which one acts
    pod = _operator_pod(base)
    assert pod["serviceAccountName"] == one(base, "ServiceAccount")["metadata"]["name"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example/authz-operator:0.1.0"
    assert container["command"] == ["authz-operator"]
    # kopf's liveness endpoint is served where the probe looks
    assert container["args"] == ["--liveness=http://0.0.0.0:8080/healthz"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"liveness": 8080, "metrics": 9090}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["WATCH_NAMESPACES"] == ""   # all namespaces, as the ClusterRole allows


def test_operator_pod_is_restricted_and_read_only(base: list[Obj]) -> None:
    pod = _operator_pod(base)
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]   # HOME=/tmp in the image


def test_metrics_service_selects_the_operator_pods(base: list[Obj]) -> None:
    svc = one(base, "Service", "authz-operator-metrics")
    pod_labels = one(base, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"


def test_pdb_keeps_one_operator(base: list[Obj]) -> None:
    pdb = one(base, "PodDisruptionBudget")
    pod_labels = one(base, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1


# ---------------------------------------------------------------------------------------------
# namespaced overlay


def test_namespaced_overlay_has_no_cluster_wide_access_but_crd_discovery(
        namespaced: list[Obj]) -> None:
    assert not find(namespaced, "ClusterRole", "authz-operator")
    assert not find(namespaced, "ClusterRoleBinding", "authz-operator")
    assert not find(namespaced, "ClusterKopfPeering")
    (cluster_role,) = find(namespaced, "ClusterRole")
    assert cluster_role["metadata"]["name"] == "authz-operator-discovery"
    assert rules(cluster_role) == DISCOVERY


def test_namespaced_role_is_the_cluster_role_minus_cluster_things(
        base: list[Obj], namespaced: list[Obj]) -> None:
    cluster = rules(one(base, "ClusterRole", "authz-operator"))
    role = rules(one(namespaced, "Role", "authz-operator"))
    assert role == (cluster - KOPF_CLUSTER) | KOPF_NAMESPACED
    assert DISCOVERY <= KOPF_CLUSTER
    assert role == expected_namespaced_rules() | KOPF_NAMESPACED


def test_namespaced_overlay_watches_exactly_where_it_may(namespaced: list[Obj]) -> None:
    env = {e["name"]: e["value"] for e in _operator_pod(namespaced)["containers"][0]["env"]}
    watched = set(env["WATCH_NAMESPACES"].split(","))
    assert watched == {"rwadurian"}
    for kind in ("Role", "RoleBinding", "KopfPeering"):
        assert {o["metadata"]["namespace"] for o in find(namespaced, kind)} == watched, kind
    binding = one(namespaced, "RoleBinding")
    assert binding["roleRef"]["kind"] == "Role"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "authz-operator",
                                    "namespace": "authz-system"}]
