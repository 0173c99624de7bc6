"""The registry of kinds, and what the other modules derive from it."""

from __future__ import annotations

from authz_operator import handlers, kinds, kube, resources
from authz_operator.spec import PLURAL


def test_paths_of_core_named_and_custom_kinds() -> None:
    assert kinds.CONFIG_MAP.path("ns", "a-config") == "/api/v1/namespaces/ns/configmaps/a-config"
    assert kinds.DEPLOYMENT.path("ns") == "/apis/apps/v1/namespaces/ns/deployments"
    assert kinds.RESOURCE.path("ns", "a", "status") == (
        f"/apis/rwadurian.io/v1alpha1/namespaces/ns/{PLURAL}/a/status")
    assert (kinds.HPA.api_version, kinds.SECRET.api_version) == ("autoscaling/v2", "v1")


def test_child_names_and_apply_order_come_from_the_registry() -> None:
    assert resources.OWNED_KINDS == ("ServiceAccount", "ConfigMap", "Service", "Deployment",
                                     "HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress")
    names = resources.child_names("a")
    assert (names.config_map, names.deployment, names.ingress) == ("a-config", "a", "a")
    assert [resources.child_name("a", k) for k in resources.OWNED_KINDS] == [
        "a", "a-config", "a", "a", "a", "a", "a"]


def test_watches_and_api_paths_cover_every_child() -> None:
    watched = {p for _, _, p in handlers.CHILD_RESOURCES}
    assert watched == {kinds.CHILD[k].kind.plural for k in resources.OWNED_KINDS} | {
        "jobs", "pods"}
    assert set(resources.OWNED_KINDS) | {"Job", "Pod", "ReplicaSet", "Secret", "Event",
                                         "AuthorizationService"} == set(kube.KINDS)
    optional = {"HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress"}
    assert optional == kinds.OPTIONAL_KINDS
